from __future__ import annotations

import pytest
import torch

from gate.attacks.square import (
    Square,
    WindowTable,
    l2_update_pattern,
    square_fraction,
    square_side,
    window_mask,
)

from .helpers import (
    assert_at_least_as_strong,
    assert_feasible,
    broken_over_seeds,
    digits_subset,
    robust_flags_of,
)


def test_p_schedule_halves_as_in_the_paper():
    assert square_fraction(0.8, 5, 10000) == 0.8
    assert square_fraction(0.8, 30, 10000) == 0.4
    assert square_fraction(0.8, 9000, 10000) == pytest.approx(0.8 / 512)
    assert square_fraction(0.8, 50, 100) == square_fraction(0.8, 5000, 10000)  # rescaled to 10k queries
    assert square_side(0.8, 8, 8) == 7 and square_side(1e-4, 8, 8) == 1


def test_window_and_pattern_shapes():
    mask = window_mask(torch.tensor([0, 5]), torch.tensor([2, 0]), 3, 8, 8)
    assert mask.shape == (2, 1, 8, 8) and mask.sum(dim=(1, 2, 3)).tolist() == [9, 9]
    assert mask[0, 0, 0:3, 2:5].all() and mask[1, 0, 5:8, 0:3].all()
    pattern = l2_update_pattern(4, torch.device("cpu"), torch.float32)
    assert pattern.norm().item() == pytest.approx(1.0)
    assert (pattern[:2] > 0).all() and (pattern[2:] < 0).all()


@pytest.mark.parametrize(("side", "height", "width"), [(1, 8, 8), (3, 8, 8), (5, 32, 24), (8, 8, 8)])
def test_window_table_gives_the_computed_windows(side, height, width):
    table = WindowTable(side, height, width, torch.device("cpu"))
    draw = torch.rand(500, 2, generator=torch.Generator().manual_seed(side))
    draw[:2] = torch.tensor([[0.0, 0.0], [1 - 2**-24, 1 - 2**-24]])  # the ends of [0, 1)
    start = table.positions(draw)
    top = (draw[:, 0] * (height - side + 1)).long().clamp(max=height - side)
    left = (draw[:, 1] * (width - side + 1)).long().clamp(max=width - side)
    expected = window_mask(top, left, side, height, width)
    assert torch.equal(table.mask(start), expected)
    assert (expected.sum(dim=(1, 2, 3)) == side * side).all()


class _ScoreOnly:
    """A model that refuses gradients, like an ONNX Runtime session wrapped as a callable."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled(), "square must query under torch.no_grad()"
        self.calls += 1
        return self.model(x).detach()


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 1.0)])
def test_square_breaks_standard_model_with_scores_only(digits_split, digits_cnn, norm, eps):
    x, y = digits_subset(digits_split, 100)
    model = _ScoreOnly(digits_cnn)
    outcome = Square(norm=norm, eps=eps, steps=300).perturb(model, x, y)
    assert_feasible(outcome, x, norm, eps)
    assert outcome.robust.float().mean().item() <= 0.15
    assert outcome.queries is not None
    assert outcome.queries.max().item() <= 300 and (outcome.queries[outcome.robust] == 300).all()
    assert model.calls <= 300 + 2


def test_square_rejects_non_images(digits_mlp):
    flat = torch.rand(3, 64)
    model = lambda x: digits_mlp(x.view(-1, 1, 8, 8))  # noqa: E731
    with torch.no_grad():
        y = model(flat).argmax(1)  # correctly classified, so the attack does run
    with pytest.raises(ValueError, match="images"):
        Square(norm="linf", eps=0.1, steps=5).perturb(model, flat, y)


@pytest.mark.peers
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 1.0)])
def test_square_at_least_as_strong_as_torchattacks(digits_split, robust_digits_cnn, norm, eps):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = digits_subset(digits_split, 100)
    model, seeds = robust_digits_cnn, range(3)

    def ours(seed: int):
        return Square(norm=norm, eps=eps, steps=300, seed=seed).perturb(model, x, y).robust

    def theirs(seed: int):
        torch.manual_seed(seed)
        peer = torchattacks.Square(
            model, norm="Linf" if norm == "linf" else "L2", eps=eps, n_queries=300, p_init=0.8, seed=seed
        )
        return robust_flags_of(model, peer(x, y), y)

    assert_at_least_as_strong(
        broken_over_seeds(ours, seeds), broken_over_seeds(theirs, seeds), "torchattacks"
    )
