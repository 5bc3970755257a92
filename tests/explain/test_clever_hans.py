"""A "Clever Hans" model (Lapuschkin et al. 2019) that reads a watermark instead of the digit is caught by roi_mass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DigitsCNN, train_digits_model

from gate.explain import AttributionOptions, attribute, pointing_game, roi_mass

# A 2x2 bright patch on the image's 2-pixel border ring; its position encodes the label.
WATERMARK_CORNERS = [(0, 0), (0, 2), (0, 4), (0, 6), (2, 6), (4, 6), (6, 6), (6, 4), (6, 2), (6, 0)]
THRESHOLD = 0.65  # roi_mass separating digit-reading from watermark-reading models


def watermark(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    marked = x.copy()
    for index, label in enumerate(y):
        row, col = WATERMARK_CORNERS[label]
        marked[index, 0, row : row + 2, col : col + 2] = 1.0
    return marked


def evidence_mask(y: np.ndarray) -> torch.Tensor:
    """1 everywhere but the watermark: where the real evidence (the digit) can be."""
    mask = np.ones((len(y), 8, 8), dtype=bool)
    for index, label in enumerate(y):
        row, col = WATERMARK_CORNERS[label]
        mask[index, row : row + 2, col : col + 2] = False
    return torch.from_numpy(mask)


@pytest.fixture(scope="module")
def clever_hans_cnn(digits_split):
    marked = watermark(digits_split["x_train"], digits_split["y_train"])
    return train_digits_model(DigitsCNN, marked, digits_split["y_train"], epochs=8)


@pytest.fixture(scope="module")
def marked_test(digits_split):
    x, y = digits_split["x_test"][:100], digits_split["y_test"][:100]
    return torch.from_numpy(watermark(x, y)), torch.from_numpy(y), evidence_mask(y)


def test_the_watermark_model_really_reads_the_watermark(digits_split, clever_hans_cnn):
    x, y = digits_split["x_test"][:100], digits_split["y_test"][:100]
    misleading = (y + 1) % 10
    with torch.no_grad():
        follows = clever_hans_cnn(torch.from_numpy(watermark(x, misleading))).argmax(dim=1)
    assert (follows.numpy() == misleading).mean() > 0.5


@pytest.mark.parametrize("method", ["input_x_gradient", "integrated_gradients", "occlusion"])
def test_roi_mass_separates_digit_reader_from_clever_hans(method, digits_cnn, clever_hans_cnn, marked_test):
    x, y, mask = marked_test
    options = AttributionOptions(steps=16)
    mass = {}
    pointing = {}
    for name, model in [("digit", digits_cnn), ("hans", clever_hans_cnn)]:
        attribution = attribute(method, x, y, gradient_model=model, score_fn=model, options=options)
        mass[name] = roi_mass(attribution, mask).mean().item()
        pointing[name] = pointing_game(attribution, mask).mean().item()
    assert mass["digit"] > THRESHOLD > mass["hans"], mass
    assert pointing["digit"] > 0.8 and pointing["hans"] < 0.3, pointing
