"""The tabular demo: a tree ensemble and an MLP on scikit-learn's breast-cancer data, gated under a feature
schema with real constraints (``builtin:demo-tabular``).

The 30 features are measurements of cell nuclei; the schema says what any real input satisfies: each
"worst" value (the mean of the three largest cells) is at least the "mean" value, a perimeter lies
between 6 and 7.2 radii (about 2π), and no concavity means no concave points. The random forest is
converted with skl2onnx (outputs ``label`` and ``probabilities``, no gradients: the black-box search
attacks it); the MLP is a PyTorch factory with its own standardisation, exported by gate.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gate.errors import UsageError

HELD_OUT = 200  # 100% export agreement on 200 samples clears the 0.98 lower bound
MEASUREMENTS = (
    "radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity", "concave_points",
    "symmetry", "fractal_dimension",
)  # fmt: skip
FEATURES = tuple(
    f"{prefix}_{name}" for prefix in ("mean", "error", "worst") for name in MEASUREMENTS
)  # the column names of the demo's CSV, in sklearn's order


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise UsageError(
            f"the tabular demo needs {module}, which is not installed",
            hint='pip install "gate-ml[tabular]" (scikit-learn, skl2onnx, pyarrow)',
        ) from None


class StandardisedMLP(nn.Module):
    """An MLP that standardises its inputs itself (the scaler ships inside the model, as it should)."""

    def __init__(self, features: int = len(FEATURES), hidden: int = 32) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.layers = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.mean) / self.std)


def breast_cancer_mlp() -> StandardisedMLP:
    """Factory for ``gate check --model gate.demo.tabular:breast_cancer_mlp --weights …``."""
    return StandardisedMLP()


def load_split(seed: int = 0) -> dict[str, np.ndarray]:
    """The 569 samples in a fixed shuffle; the last ``HELD_OUT`` are held out."""
    _require("sklearn")
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[:-HELD_OUT], order[-HELD_OUT:]
    return {
        "x_train": x[train].astype(np.float32),
        "y_train": y[train].astype(np.int64),
        "x_test": x[test].astype(np.float32),
        "y_test": y[test].astype(np.int64),
    }


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """The evaluation data as a CSV with a header (features, then ``label``)."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow([*FEATURES, "label"])
        for row, label in zip(x.tolist(), y.tolist(), strict=True):
            writer.writerow([repr(float(np.float32(value))) for value in row] + [int(label)])
    return path


def train_mlp(x: np.ndarray, y: np.ndarray, *, epochs: int = 300, seed: int = 0) -> StandardisedMLP:
    """Full-batch Adam on the training split (seeded; well under a second on a CPU)."""
    torch.manual_seed(seed)
    model = StandardisedMLP()
    features = torch.from_numpy(x)
    model.mean.copy_(features.mean(dim=0))
    model.std.copy_(features.std(dim=0).clamp_min(1e-6))
    labels = torch.from_numpy(y)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(features), labels).backward()
        optimiser.step()
    return model.eval()


def train_forest(x: np.ndarray, y: np.ndarray, path: Path, *, seed: int = 0) -> Path:
    """A 50-tree random forest converted by skl2onnx (``label`` + ``probabilities``, no ZipMap)."""
    _require("sklearn")
    _require("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=50, max_depth=6, random_state=seed).fit(x, y)
    proto = to_onnx(forest, x[:1], options={id(forest): {"zipmap": False}}, target_opset=17)
    path.write_bytes(proto.SerializeToString())
    return path


__all__ = [
    "FEATURES",
    "StandardisedMLP",
    "breast_cancer_mlp",
    "load_split",
    "train_forest",
    "train_mlp",
    "write_csv",
]
