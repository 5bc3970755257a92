"""Attributions per feature: a ReLU MLP on breast cancer (30 features in [0, 1]) and analytic models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gate.errors import CheckError
from gate.explain import (
    METHODS,
    AttributionOptions,
    attribute,
    deletion_auc,
    feature_importance_stability,
    insertion_auc,
    max_sensitivity,
    probability_curve,
    randomization_similarity,
    rank_stability,
    roi_mass,
    save_feature_importance,
    top_features,
)

from .helpers import breast_cancer, train_tabular_mlp

IGNORED = 5
FEATURE_METHODS = [name for name in METHODS if name != "rise"]


@pytest.fixture(scope="module")
def cancer():
    """``(model, model_blind_to_feature_5, x_test, y_test)``."""
    x_train, y_train, x_test, y_test = breast_cancer()
    return (
        train_tabular_mlp(x_train, y_train),
        train_tabular_mlp(x_train, y_train, ignore=IGNORED),
        x_test[:64],
        y_test[:64],
    )


def _logit(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).gather(1, target[:, None])[:, 0]


class Wiggly(nn.Module):
    """A linear model plus a fast, small ripple ``0.01 * sin(500 x)`` on every feature: its outputs barely
    move under small noise, but its gradients (0.01 * 500 = 5 times the ripple's cosine) reshuffle."""

    def __init__(self, features: int = 30) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.linear = nn.Linear(features, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + 0.01 * torch.sin(500 * x).sum(dim=1, keepdim=True)


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_every_feature_method_gives_one_value_per_feature(cancer, method):
    model, _, x, y = cancer
    options = AttributionOptions(samples=4, window=7)  # occlusion ignores the window on features
    attribution = attribute(method, x, y, gradient_model=model, score_fn=model, options=options, seed=1)
    assert attribution.shape == x.shape and torch.isfinite(attribution).all()
    assert attribution.abs().sum() > 0


@pytest.mark.parametrize("baseline", ["zero", 0.5])
def test_integrated_gradients_is_complete_on_the_trained_mlp(cancer, baseline):
    model, _, x, y = cancer
    options = AttributionOptions(steps=256, baseline=baseline)
    attribution = attribute(
        "integrated_gradients", x, y, gradient_model=model, score_fn=model, options=options
    )
    reference = torch.zeros_like(x) if baseline == "zero" else torch.full_like(x, baseline)
    difference = _logit(model, x, y) - _logit(model, reference, y)
    # ReLU kinks slow the quadrature down: 256 points leave errors under 0.2% of the largest difference.
    assert difference.abs().max() > 5
    torch.testing.assert_close(attribution.sum(dim=1), difference, atol=0.03, rtol=0)


def test_occlusion_of_one_feature_at_a_time_matches_its_definition(cancer):
    model, _, x, y = cancer
    options = AttributionOptions(baseline=0.25, batch_size=100)
    attribution = attribute("occlusion", x, y, gradient_model=None, score_fn=model, options=options)
    occluded = x.clone()
    occluded[:, 3] = 0.25
    with torch.no_grad():
        drop = torch.softmax(model(x), 1) - torch.softmax(model(occluded), 1)
    torch.testing.assert_close(attribution[:, 3], drop.gather(1, y[:, None])[:, 0], atol=1e-6, rtol=0)


def test_a_feature_the_model_ignores_gets_no_attribution(cancer):
    _, blind, x, y = cancer
    assert (blind[0].weight[:, IGNORED] == 0).all()

    def onnx_like(batch: torch.Tensor) -> np.ndarray:  # NumPy out, as ONNX Runtime returns
        with torch.no_grad():
            return blind(batch).numpy()

    occluded = attribute("occlusion", x, y, gradient_model=None, score_fn=onnx_like)
    integrated = attribute("integrated_gradients", x, y, gradient_model=blind, score_fn=blind)
    assert (occluded[:, IGNORED] == 0).all() and (integrated[:, IGNORED] == 0).all()
    # Every other feature moves the probability of some sample (confident ones saturate at 1 in float32).
    assert (occluded.abs().sum(dim=0) > 0).sum() == x.shape[1] - 1


def test_rise_and_the_mean_baseline_are_refused_on_features(cancer):
    model, _, x, y = cancer
    with pytest.raises(CheckError, match=r"rise is defined on images"):
        attribute("rise", x, y, gradient_model=None, score_fn=model)
    with pytest.raises(CheckError, match=r"baseline 'mean'.*features \[N, F\]"):
        attribute(
            "occlusion",
            x,
            y,
            gradient_model=None,
            score_fn=model,
            options=AttributionOptions(baseline="mean"),
        )
    with pytest.raises(CheckError, match="defined on images"):
        roi_mass(x, torch.ones((len(x), 30)))


def test_deletion_goes_feature_by_feature_in_attribution_order():
    """A linear model whose target logit is ``sum_i w_i x_i``: deleting feature j changes it by ``w_j x_j``."""
    weight = torch.tensor([[0.0, 0.0, 0.0, 0.0], [4.0, 2.0, 1.0, -1.0]])
    model = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    x, y = torch.ones((1, 4)), torch.ones(1, dtype=torch.long)
    attribution = weight[1:] * x
    fractions, curve = probability_curve(
        model, x, torch.zeros_like(x), y, attribution, steps=64, batch_size=8
    )
    torch.testing.assert_close(fractions, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    logits = torch.tensor([6.0, 2.0, 0.0, -1.0, 0.0])  # after deleting 4, then 2, then 1, then -1
    torch.testing.assert_close(curve[0], torch.sigmoid(logits))


def test_deletion_and_insertion_reward_a_faithful_order(cancer):
    model, _, x, y = cancer
    attribution = attribute("integrated_gradients", x, y, gradient_model=model, score_fn=model)
    faithful = deletion_auc(model, x, y, attribution)
    reversed_order = deletion_auc(model, x, y, -attribution)
    assert faithful.shape == (len(x),) and (faithful <= 1).all() and (faithful >= 0).all()
    assert faithful.mean() < reversed_order.mean() - 0.3
    assert (
        insertion_auc(model, x, y, attribution).mean() > insertion_auc(model, x, y, -attribution).mean() + 0.3
    )


def test_sensitivity_and_randomisation_run_on_feature_vectors(cancer):
    model, _, x, y = cancer
    index = torch.arange(100, 100 + len(x))
    args = {"gradient_model": model, "seed": 3, "index": index}
    sensitivity = max_sensitivity("integrated_gradients", x, y, score_fn=model, radius=0.02, **args)
    assert sensitivity.shape == (len(x),) and (sensitivity > 0).all() and sensitivity.mean() < 0.5
    randomised = randomization_similarity("saliency", x, y, **args)
    assert randomised.layers == ("2", "0") and randomised.curve.shape == (3, len(x))
    torch.testing.assert_close(randomised.curve[0], torch.ones(len(x)))
    assert randomised.similarity.mean() < 0.3


def test_stability_is_one_for_a_linear_model_and_near_one_for_its_input_x_gradient():
    model = Wiggly().linear
    x = torch.rand((16, 30), generator=torch.Generator().manual_seed(0))
    y = torch.ones(16, dtype=torch.long)
    args = {"gradient_model": model, "score_fn": model, "radius": 0.02}
    torch.testing.assert_close(feature_importance_stability("saliency", x, y, **args), torch.ones(16))
    assert feature_importance_stability("input_x_gradient", x, y, **args).mean() > 0.95


def test_stability_falls_for_a_model_with_a_sharp_nonlinearity(cancer):
    _, _, x, y = cancer
    wiggly = Wiggly()
    smooth = feature_importance_stability(
        "saliency", x, y, gradient_model=wiggly.linear, score_fn=wiggly.linear
    )
    sharp = feature_importance_stability("saliency", x, y, gradient_model=wiggly, score_fn=wiggly)
    assert smooth.mean() > 0.99 and sharp.mean() < 0.3


def test_rank_stability_is_lower_for_noisier_attributions():
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand((8, 30), generator=generator)

    def noisy(scale: float) -> list[torch.Tensor]:
        return [reference + scale * torch.randn((8, 30), generator=generator) for _ in range(4)]

    torch.testing.assert_close(rank_stability(reference, [reference, -reference]), torch.ones(8))
    slightly, very = rank_stability(reference, noisy(0.01)), rank_stability(reference, noisy(1.0))
    assert slightly.min() > 0.95 and very.mean() < 0.5
    with pytest.raises(CheckError, match="shape"):
        rank_stability(reference, [reference[:, :5]])


def test_stability_of_a_sample_does_not_depend_on_its_batch(cancer):
    model, _, x, y = cancer
    index = torch.arange(500, 500 + len(x))
    args = {"gradient_model": model, "score_fn": model, "seed": 4, "options": AttributionOptions(samples=4)}
    whole = feature_importance_stability("smoothgrad", x, y, index=index, **args)
    parts = torch.cat(
        [
            feature_importance_stability("smoothgrad", x[s], y[s], index=index[s], **args)
            for s in (slice(0, 7), slice(7, None))
        ]
    )
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=0)
    assert not torch.equal(whole, feature_importance_stability("smoothgrad", x, y, index=index + 1, **args))
    assert (whole <= 1).all() and (whole >= -1).all()
    with pytest.raises(CheckError, match="copies >= 1"):
        feature_importance_stability("saliency", x, y, gradient_model=model, score_fn=model, copies=0)


def test_stability_also_reads_images():
    from .helpers import SmoothNet, random_batch

    model = SmoothNet()
    x, target = random_batch(n=3)
    value = feature_importance_stability("saliency", x, target, gradient_model=model, score_fn=model)
    assert value.shape == (3,) and (value > 0.5).all()


def test_the_feature_chart_ranks_by_mean_absolute_attribution(tmp_path):
    attribution = torch.tensor([[1.0, -3.0, 0.0, 2.0], [1.0, 1.0, 0.0, -2.0]])
    ranking = top_features(attribution, names=("age", "income", "debt", "tenure"), top=3)
    assert ranking == [("income", 2.0), ("tenure", 2.0), ("age", 1.0)]
    assert [name for name, _ in top_features(attribution)] == ["f1", "f3", "f0", "f2"]
    with pytest.raises(CheckError, match="names 2 features but its samples have 4"):
        top_features(attribution, names=("a", "b"))
    path = save_feature_importance(tmp_path / "chart" / "importance.png", ranking, title="test")
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.width > 300
