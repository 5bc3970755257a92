from __future__ import annotations

import pytest
import torch

from gate.errors import CheckError
from gate.explain import AttributionOptions, randomization_similarity

from ..helpers import SmoothNet, random_batch


def _digits(digits_split, n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(digits_split["x_test"][:n]), torch.from_numpy(digits_split["y_test"][:n])


def test_saliency_of_a_trained_cnn_does_not_survive_randomisation(digits_split, digits_cnn):
    x, y = _digits(digits_split)
    before = [parameter.clone() for parameter in digits_cnn.parameters()]
    result = randomization_similarity("saliency", x, y, gradient_model=digits_cnn, seed=0)
    assert result.layers == ("head.3", "head.1", "features.2", "features.0")
    assert result.curve.shape == (5, 40)
    assert result.curve[0].min() > 0.99  # untouched copy: the sanity path
    assert result.similarity.mean() < 0.5
    assert result.curve[1:].mean(dim=1)[-1] < result.curve[1].mean()  # the cascade keeps destroying
    assert all(torch.equal(a, b) for a, b in zip(before, digits_cnn.parameters(), strict=True))


def test_seeded_and_available_for_gradient_free_methods():
    model = SmoothNet()
    x, target = random_batch(n=4)
    options = AttributionOptions(window=2, stride=2)
    first = randomization_similarity("occlusion", x, target, gradient_model=model, options=options, seed=5)
    again = randomization_similarity("occlusion", x, target, gradient_model=model, options=options, seed=5)
    torch.testing.assert_close(first.curve, again.curve)
    assert first.curve[0].min() > 0.99
    assert first.similarity.shape == (4,)


def test_chosen_layers_and_errors():
    model = SmoothNet()
    x, target = random_batch(n=2)
    result = randomization_similarity("saliency", x, target, gradient_model=model, layers=["head"])
    assert result.layers == ("head",) and result.curve.shape == (2, 2)
    with pytest.raises(CheckError, match="unknown layers"):
        randomization_similarity("saliency", x, target, gradient_model=model, layers=["nope"])
    with pytest.raises(CheckError, match="needs a PyTorch model to randomise"):
        randomization_similarity("occlusion", x, target, gradient_model=None)
