"""Per-sample seeding: a sample's noise depends on (seed, index), never on its batch."""

from __future__ import annotations

import torch
from torch import nn

from gate.explain import AttributionOptions, attribute, max_sensitivity
from gate.randomness.generators import sample_seed


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3)).eval()


def test_sample_seed_is_stable_and_stream_specific():
    assert sample_seed(1, 5, stream="a") == sample_seed(1, 5, stream="a")
    assert (
        len({sample_seed(1, 5, stream="a"), sample_seed(1, 6, stream="a"), sample_seed(1, 5, stream="b")})
        == 3
    )


def test_smoothgrad_and_max_sensitivity_do_not_depend_on_batch_composition():
    model = tiny_model()
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    index = torch.tensor([10, 11, 12, 13, 14, 15])
    options = AttributionOptions(samples=4)
    common = {"gradient_model": model, "score_fn": model, "options": options, "seed": 3}
    whole = attribute("smoothgrad", x, target, index=index, **common)
    # The last three samples evaluated on their own (as in another shard) get the same maps.
    alone = attribute("smoothgrad", x[3:], target[3:], index=index[3:], **common)
    torch.testing.assert_close(whole[3:], alone)
    # Without an index the noise follows the position in the batch, and the maps differ.
    positional = attribute("smoothgrad", x[3:], target[3:], **common)
    assert not torch.allclose(whole[3:], positional)
    sensitivity = max_sensitivity("smoothgrad", x, target, index=index, **common)
    part = max_sensitivity("smoothgrad", x[3:], target[3:], index=index[3:], **common)
    torch.testing.assert_close(sensitivity[3:], part)
