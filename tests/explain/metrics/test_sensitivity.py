from __future__ import annotations

import torch

from gate.explain import AttributionOptions, max_sensitivity

from ..helpers import LinearModel, SmoothNet, random_batch


def test_gradient_of_a_linear_model_does_not_move():
    model = LinearModel()
    x, target = random_batch(n=4)
    value = max_sensitivity("saliency", x, target, gradient_model=model, score_fn=model, radius=0.2)
    torch.testing.assert_close(value, torch.zeros(4))


def test_input_x_gradient_on_a_linear_model_stays_within_the_analytic_bound():
    """|w * d| / |w * x| <= radius * |w| / |w * x| for every d in the L-inf ball."""
    model = LinearModel()
    x, target = random_batch(n=4)
    weight = model.weight_of(target, x.shape).flatten(1)
    radius = 0.1
    value = max_sensitivity(
        "input_x_gradient", x, target, gradient_model=model, score_fn=model, radius=radius
    )
    bound = radius * weight.norm(dim=1) / (weight * x.flatten(1)).norm(dim=1)
    assert (value > 0).all() and (value <= bound + 1e-6).all()


def test_seeded_zero_at_zero_radius_and_works_without_gradients():
    model = SmoothNet()
    x, target = random_batch(n=3)
    options = AttributionOptions(window=4, stride=4)
    args = {"gradient_model": None, "score_fn": model, "options": options}
    first = max_sensitivity("occlusion", x, target, **args, seed=1, perturbations=3)
    again = max_sensitivity("occlusion", x, target, **args, seed=1, perturbations=3)
    torch.testing.assert_close(first, again)
    torch.testing.assert_close(max_sensitivity("occlusion", x, target, **args, radius=0.0), torch.zeros(3))
