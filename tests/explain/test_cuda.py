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
    feature_importance_stability,
    max_sensitivity,
    pointing_game,
    randomization_similarity,
    roi_mass,
)

from .helpers import SmoothNet, breast_cancer, random_batch, train_tabular_mlp

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


def test_feature_attributions_and_their_metrics_on_cuda_match_cpu():
    x_train, y_train, x_test, y_test = breast_cancer()
    trained = train_tabular_mlp(x_train, y_train)
    index = torch.arange(40, 72)
    results = {}
    for device in ("cpu", "cuda"):
        model = copy.deepcopy(trained).to(device)
        x, target = x_test[:32].to(device), y_test[:32].to(device)
        args = {"gradient_model": model, "score_fn": model, "options": OPTIONS, "seed": 2}
        maps = [
            attribute(method, x, target, **args, index=index)
            for method in sorted(METHODS)
            if method != "rise"
        ]
        stability = feature_importance_stability("saliency", x, target, **args, index=index.to(device))
        curve = deletion_auc(model, x, target, maps[0])
        assert stability.device.type == device
        results[device] = (torch.stack(maps).cpu(), torch.stack([stability, curve]).cpu())
    torch.testing.assert_close(results["cuda"][0], results["cpu"][0], atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(results["cuda"][1], results["cpu"][1], atol=1e-2, rtol=1e-2)
