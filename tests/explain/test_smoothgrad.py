from __future__ import annotations

import torch
from captum.attr import NoiseTunnel, Saliency

from gate.explain import AttributionOptions, smoothgrad

from .helpers import LinearModel, SmoothNet, random_batch


def test_linear_model_smoothgrad_is_the_constant_gradient():
    model = LinearModel()
    x, target = random_batch()
    options = AttributionOptions(samples=5, noise=0.3)
    attribution = smoothgrad(x, target, gradient_model=model, score_fn=model, options=options)
    torch.testing.assert_close(attribution, model.weight_of(target, x.shape))


def test_without_noise_it_is_the_signed_gradient():
    model = SmoothNet()
    x, target = random_batch()
    options = AttributionOptions(samples=3, noise=0.0)
    ours = smoothgrad(x, target, gradient_model=model, score_fn=model, options=options)
    theirs = Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=False)
    torch.testing.assert_close(ours, theirs)


def test_seeded_and_independent_of_batch_size():
    model = SmoothNet()
    x, target = random_batch()
    run = [
        smoothgrad(
            x, target, gradient_model=model, score_fn=model, options=AttributionOptions(batch_size=b), seed=s
        )
        for b, s in [(5, 1), (1000, 1), (1000, 2)]
    ]
    torch.testing.assert_close(run[0], run[1])
    assert not torch.allclose(run[1], run[2])


def test_close_to_captum_noise_tunnel_with_many_samples():
    """Same estimator, different noise draws: with 512 samples both approach the same expectation."""
    model = SmoothNet()
    x, target = random_batch(n=4)
    options = AttributionOptions(samples=512, noise=0.2)
    ours = smoothgrad(x, target, gradient_model=model, score_fn=model, options=options)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        theirs = NoiseTunnel(Saliency(model)).attribute(
            x.clone().requires_grad_(True),
            nt_type="smoothgrad",
            nt_samples=512,
            stdevs=0.2,
            target=target,
            abs=False,
        )
    cosine = torch.nn.functional.cosine_similarity(ours.flatten(1), theirs.flatten(1))
    assert cosine.min() > 0.98
