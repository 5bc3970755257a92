from __future__ import annotations

import pytest
import torch

from gate.errors import CheckError
from gate.explain import pointing_game, roi_mass


def _mask() -> torch.Tensor:
    mask = torch.zeros((1, 4, 4))
    mask[0, :2, :2] = 1
    return mask


def test_roi_mass_counts_positive_relevance_summed_over_channels():
    attribution = torch.zeros((1, 2, 4, 4))
    attribution[0, 0, 0, 0] = 3.0  # inside
    attribution[0, 1, 0, 0] = -1.0  # same pixel, other channel: relevance 2
    attribution[0, 0, 3, 3] = 2.0  # outside
    attribution[0, 0, 3, 2] = -5.0  # negative: ignored
    torch.testing.assert_close(roi_mass(attribution, _mask()), torch.tensor([0.5]))


def test_roi_mass_without_positive_relevance_is_zero():
    assert roi_mass(-torch.ones((1, 1, 4, 4)), _mask()).item() == 0.0


def test_pointing_game_hits_and_misses():
    attribution = torch.zeros((2, 1, 4, 4))
    attribution[0, 0, 1, 1] = 1.0
    attribution[1, 0, 3, 3] = 1.0
    torch.testing.assert_close(pointing_game(attribution, _mask().repeat(2, 1, 1)), torch.tensor([1.0, 0.0]))


def test_mask_shape_is_checked():
    with pytest.raises(CheckError, match=r"mask must be \[N, H, W\]"):
        roi_mass(torch.ones((1, 1, 4, 4)), torch.ones((1, 1, 4, 4)))
