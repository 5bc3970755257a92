from __future__ import annotations

import pytest
import torch

import gate.explain as explain
from gate.errors import CheckError
from gate.explain import METHODS, AttributionOptions, attribute

from .helpers import LinearModel, numpy_score_fn, random_batch

GRADIENT_METHODS = {"saliency", "input_x_gradient", "integrated_gradients", "smoothgrad"}
GRADIENT_FREE = {"occlusion", "rise"}


def test_registry_lists_every_method_with_its_needs():
    assert set(METHODS) == GRADIENT_METHODS | GRADIENT_FREE
    assert {name for name, spec in METHODS.items() if spec.needs_gradients} == GRADIENT_METHODS
    for name, spec in METHODS.items():
        assert spec.name == name
        assert spec.function is getattr(explain, name)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_attribute_dispatches_with_the_common_signature(method):
    model = LinearModel()
    x, target = random_batch(n=3)
    options = AttributionOptions(steps=4, samples=2, masks=20)
    attribution = attribute(method, x, target, gradient_model=model, score_fn=model, options=options, seed=3)
    direct = METHODS[method].function(
        x, target, gradient_model=model, score_fn=model, options=options, seed=3
    )
    assert attribution.shape == x.shape
    torch.testing.assert_close(attribution, direct)


@pytest.mark.parametrize("method", sorted(GRADIENT_FREE))
def test_gradient_free_methods_need_only_a_score_function(method):
    x, target = random_batch(n=2)
    score_fn = numpy_score_fn(LinearModel())
    options = AttributionOptions(masks=20)
    attribution = attribute(method, x, target, gradient_model=None, score_fn=score_fn, options=options)
    assert torch.isfinite(attribution).all()


@pytest.mark.parametrize("method", sorted(GRADIENT_METHODS))
def test_gradient_methods_refuse_a_model_without_gradients(method):
    x, target = random_batch(n=2)
    with pytest.raises(CheckError, match=f"method {method} needs gradients"):
        attribute(method, x, target, gradient_model=None, score_fn=numpy_score_fn(LinearModel()))


def test_unknown_method_lists_the_choices():
    x, target = random_batch(n=2)
    with pytest.raises(CheckError, match=r"unknown attribution method 'gradcam'.*saliency"):
        attribute("gradcam", x, target, gradient_model=LinearModel(), score_fn=LinearModel())


def test_bad_inputs_are_reported():
    model = LinearModel()
    x, target = random_batch(n=2)
    with pytest.raises(CheckError, match=r"images \[N, C, H, W\] or features \[N, F\]"):
        attribute("saliency", x[:, 0], target, gradient_model=model, score_fn=model)
    with pytest.raises(CheckError, match="one class per sample"):
        attribute("saliency", x, target[:1].repeat(3), gradient_model=model, score_fn=model)


@pytest.mark.parametrize(
    ("field", "value"), [("steps", 0), ("noise", -0.1), ("mask_probability", 0.0), ("baseline", "blur")]
)
def test_invalid_options_are_rejected(field, value):
    with pytest.raises(CheckError, match=field):
        AttributionOptions(**{field: value})
