"""Tiny scikit-learn, XGBoost and LightGBM classifiers converted to ONNX as their users convert them.

Each builder trains on min-max scaled breast-cancer (binary) or wine (3 classes) features, so the data
lies in [0, 1] like the policy's default input range, and writes the converter's file. Converters
import lazily: a test module calls ``pytest.importorskip`` first.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from sklearn.datasets import load_breast_cancer, load_wine


def scaled(loader: Callable[..., Any]) -> tuple[np.ndarray, np.ndarray]:
    x, y = loader(return_X_y=True)
    x = ((x - x.min(0)) / (x.max(0) - x.min(0))).astype(np.float32)
    return x, y.astype(np.int64)


def cancer() -> tuple[np.ndarray, np.ndarray]:
    return scaled(load_breast_cancer)


def wine() -> tuple[np.ndarray, np.ndarray]:
    return scaled(load_wine)


def _skl2onnx(model: Any, features: int, zipmap: bool, options_of: Any = None) -> onnx.ModelProto:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    return convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, features]))],
        options={id(model if options_of is None else options_of): {"zipmap": zipmap}},
    )


def _fit(model: Any, x: np.ndarray, y: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notices of a deliberately tiny training
        return model.fit(x, y)


def sklearn_onnx(name: str, path: Path) -> Path:
    """Train the named model and write its ONNX file to ``path``; returns ``path``."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    x, y = wine() if name.endswith("wine") else cancer()
    zipmap = "zipmap" in name
    kind = name.split("-")[0]
    if kind in ("xgboost", "lightgbm"):
        proto = _boosted(kind, x, y)
    else:
        estimators = {
            "logreg": lambda: LogisticRegression(max_iter=500),
            "pipeline": lambda: make_pipeline(
                StandardScaler(), Normalizer(), LogisticRegression(max_iter=500)
            ),
            "mlp": lambda: MLPClassifier((16,), max_iter=300, random_state=0),
            "forest": lambda: RandomForestClassifier(15, max_depth=4, random_state=0),
            "boosting": lambda: GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0),
        }
        model = _fit(estimators[kind](), x, y)
        options_of = model.steps[-1][1] if kind == "pipeline" else model  # the options go to the classifier
        proto = _skl2onnx(model, x.shape[1], zipmap, options_of)
    onnx.save_model(proto, str(path))
    return path


def _boosted(kind: str, x: np.ndarray, y: np.ndarray) -> onnx.ModelProto:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [("input", FloatTensorType([None, x.shape[1]]))]
    if kind == "xgboost":
        import xgboost

        model = _fit(xgboost.XGBClassifier(n_estimators=8, max_depth=3, random_state=0), x, y)
        # The converter refuses opsets above 15.
        return onnxmltools.convert_xgboost(model, initial_types=types, target_opset=15)
    import lightgbm

    model = _fit(lightgbm.LGBMClassifier(n_estimators=8, verbose=-1, random_state=0), x, y)
    return onnxmltools.convert_lightgbm(model, initial_types=types, zipmap=False)


def forest_with_labels(path: Path, labels: list[Any], zipmap: bool) -> Path:
    """A random forest on breast cancer with its two classes renamed to ``labels`` (ints or strings)."""
    from sklearn.ensemble import RandomForestClassifier

    x, y = cancer()
    renamed = np.array(labels, dtype=object if isinstance(labels[0], str) else np.int64)[y]
    model = _fit(RandomForestClassifier(7, max_depth=3, random_state=0), x, renamed)
    onnx.save_model(_skl2onnx(model, x.shape[1], zipmap), str(path))
    return path
