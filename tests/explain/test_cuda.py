"""Every method and metric runs on CUDA tensors and matches its CPU result (seeded draws are made on CPU)."""

from __future__ import annotations

import copy

import pytest
import torch

from gate.explain import (
    METHODS,
    AttributionOptions,
    attribute,
    deletion_auc,
    max_sensitivity,
    pointing_game,
    randomization_similarity,
    roi_mass,
)

from .helpers import SmoothNet, random_batch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
OPTIONS = AttributionOptions(steps=16, samples=8, masks=100, mask_grid=4, batch_size=64)


def _on(device: str):
    model = copy.deepcopy(SmoothNet()).to(device)
    x, target = random_batch(n=6)
    return model, x.to(device), target.to(device)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_on_cuda_matches_cpu(method):
    results = {}
    for device in ("cpu", "cuda"):
        model, x, target = _on(device)
        attribution = attribute(
            method, x, target, gradient_model=model, score_fn=model, options=OPTIONS, seed=2
        )
        assert attribution.device.type == device
        results[device] = attribution.cpu()
    torch.testing.assert_close(results["cuda"], results["cpu"], atol=1e-4, rtol=1e-3)


def test_metrics_on_cuda_match_cpu():
    results = {}
    for device in ("cpu", "cuda"):
        model, x, target = _on(device)
        attribution = attribute("saliency", x, target, gradient_model=model, score_fn=model, options=OPTIONS)
        mask = torch.zeros((6, 8, 8), device=device)
        mask[:, 2:6, 2:6] = 1
        randomization = randomization_similarity("saliency", x, target, gradient_model=model, options=OPTIONS)
        results[device] = torch.stack(
            [
                deletion_auc(model, x, target, attribution),
                roi_mass(attribution, mask),
                pointing_game(attribution, mask),
                randomization.similarity,
                max_sensitivity("saliency", x, target, gradient_model=model, score_fn=model, perturbations=3),
            ]
        ).cpu()
    torch.testing.assert_close(results["cuda"], results["cpu"], atol=1e-3, rtol=1e-2)
