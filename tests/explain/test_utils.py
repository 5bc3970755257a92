from __future__ import annotations

import numpy as np
import pytest
import torch

from gate.explain._utils import average_ranks, gaussian_blur, resolve_baseline, spearman


def test_average_ranks_match_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    values = torch.tensor([[3.0, 1.0, 3.0, 2.0, 1.0], [0.0, 0.0, 0.0, 0.0, 5.0]])
    expected = np.stack([stats.rankdata(row) for row in values.numpy()])
    np.testing.assert_allclose(average_ranks(values).numpy(), expected)


def test_spearman_matches_scipy_and_handles_constant_rows():
    stats = pytest.importorskip("scipy.stats")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn((4, 1, 5, 5), generator=generator).round()
    b = a + torch.randn((4, 1, 5, 5), generator=generator)
    expected = [stats.spearmanr(a[i].flatten(), b[i].flatten()).statistic for i in range(4)]
    np.testing.assert_allclose(spearman(a, b).numpy(), expected, rtol=1e-5)
    torch.testing.assert_close(spearman(a, a), torch.ones(4))
    assert spearman(torch.ones((1, 9)), torch.arange(9.0)[None]).item() == 0.0


def test_mean_baseline_is_per_sample_and_channel():
    x = torch.arange(2 * 2 * 2 * 2, dtype=torch.float32).view(2, 2, 2, 2)
    baseline = resolve_baseline(x, "mean")
    torch.testing.assert_close(baseline[1, 0], torch.full((2, 2), x[1, 0].mean().item()))


def test_blur_keeps_constants_and_smooths_a_spike():
    constant = torch.full((1, 3, 8, 8), 0.7)
    torch.testing.assert_close(gaussian_blur(constant, 1.5), constant)
    spike = torch.zeros((1, 1, 9, 9))
    spike[0, 0, 4, 4] = 1
    blurred = gaussian_blur(spike, 1.0)
    assert blurred.shape == spike.shape
    assert blurred[0, 0, 4, 4] < 0.5 and blurred[0, 0, 4, 5] > 0
    assert abs(blurred.sum().item() - 1) < 1e-5
