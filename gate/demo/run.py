"""The demo as a library call: prepare inputs, run the gate on two models, return both reports."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.torch import save_file

from gate.console import Progress
from gate.demo.models import DigitsCNN, load_digits_arrays, split, train
from gate.model import ModelSpec
from gate.report import Report, write_reports
from gate.runner import RunOptions, run_gate

DEMO_POLICY = "builtin:demo-digits"
FACTORY = "gate.demo.models:digits_cnn"
ADVERSARIAL_EPS = 0.2


@dataclass(frozen=True)
class DemoResult:
    """One gated model of the demo: its name, its report and where the report lies."""

    name: str
    report: Report
    report_dir: Path


def _digits_inputs(directory: Path) -> tuple[dict[str, np.ndarray], Path]:
    """The digits split, with its held-out part written where the demo's gate runs read it."""
    directory.mkdir(parents=True, exist_ok=True)
    data = split(*load_digits_arrays())
    data_path = directory / "digits-test.npz"
    np.savez(data_path, x=data["x_test"], y=data["y_test"])
    return data, data_path


def _trained_weights(directory: Path, name: str, data: dict[str, np.ndarray], **training: float) -> Path:
    model = train(DigitsCNN, data["x_train"], data["y_train"], **training)  # type: ignore[arg-type]
    path = directory / f"{name}.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def prepare_inputs(directory: Path) -> tuple[Path, dict[str, Path]]:
    """Train both models (seeded; seconds on a CPU) and write the held-out data and the weights."""
    data, data_path = _digits_inputs(directory)
    weights = {
        name: _trained_weights(directory, name, data, adversarial_eps=eps)
        for name, eps in (("standard", 0.0), ("robust", ADVERSARIAL_EPS))
    }
    return data_path, weights


def gate_each(
    policy: str, specs: dict[str, ModelSpec], data_path: Path, report_dir: Path, progress: Progress | None
) -> list[DemoResult]:
    """Gate each named model under ``policy``, each in its own report folder under ``report_dir``."""
    results = []
    for name, spec in specs.items():
        options = RunOptions(
            policy=policy,
            model=spec,
            data=str(data_path),
            report_dir=report_dir / name,
            progress=progress or Progress(enabled=False),
        )
        report = run_gate(options)
        write_reports(report, options.report_dir)
        results.append(DemoResult(name, report, options.report_dir))
    return results


def run_demo(report_dir: Path, *, device: str = "auto", progress: Progress | None = None) -> list[DemoResult]:
    """Gate the standard and the robust model; each gets its own report folder under ``report_dir``."""
    data_path, weights = prepare_inputs(report_dir / "inputs")
    specs = {
        name: ModelSpec(source=FACTORY, weights=path, input_shape=(1, 8, 8), device=device)  # type: ignore[arg-type]
        for name, path in weights.items()
    }
    return gate_each(DEMO_POLICY, specs, data_path, report_dir, progress)


CERTIFIED_POLICY = "builtin:demo-certified"
TRAINING_SIGMA = 0.5


def run_certified_demo(
    report_dir: Path, *, device: str = "auto", progress: Progress | None = None
) -> list[DemoResult]:
    """Gate a standard digits CNN and one trained with Gaussian noise (σ = 0.5) under
    ``builtin:demo-certified``: randomized smoothing certifies the second and not the first."""
    directory = report_dir / "inputs"
    data, data_path = _digits_inputs(directory)
    specs = {
        name: ModelSpec(
            source=FACTORY,
            weights=_trained_weights(directory, name, data, noise_sigma=sigma),
            input_shape=(1, 8, 8),
            device=device,  # type: ignore[arg-type]
        )
        for name, sigma in (("standard", 0.0), ("noise-trained", TRAINING_SIGMA))
    }
    return gate_each(CERTIFIED_POLICY, specs, data_path, report_dir, progress)


TABULAR_POLICY = "builtin:demo-tabular"
MLP_FACTORY = "gate.demo.tabular:breast_cancer_mlp"


def prepare_tabular_inputs(directory: Path) -> tuple[Path, dict[str, ModelSpec]]:
    """Train the random forest and the MLP on breast cancer; write the held-out CSV, the forest's ONNX
    file and the MLP's weights."""
    from gate.demo import tabular

    directory.mkdir(parents=True, exist_ok=True)
    data = tabular.load_split()
    data_path = tabular.write_csv(directory / "breast-cancer-test.csv", data["x_test"], data["y_test"])
    forest = tabular.train_forest(data["x_train"], data["y_train"], directory / "random-forest.onnx")
    mlp = tabular.train_mlp(data["x_train"], data["y_train"])
    weights = directory / "mlp.safetensors"
    save_file(mlp.state_dict(), str(weights))
    specs = {
        "random-forest": ModelSpec(source=str(forest)),
        "mlp": ModelSpec(source=MLP_FACTORY, weights=weights, input_shape=(len(tabular.FEATURES),)),
    }
    return data_path, specs


def run_tabular_demo(
    report_dir: Path, *, device: str = "auto", progress: Progress | None = None
) -> list[DemoResult]:
    """Gate the random forest and the MLP under ``builtin:demo-tabular``, each in its own report folder."""
    data_path, specs = prepare_tabular_inputs(report_dir / "inputs")
    on_device = {name: dataclasses.replace(spec, device=device) for name, spec in specs.items()}  # type: ignore[arg-type]
    return gate_each(TABULAR_POLICY, on_device, data_path, report_dir, progress)
