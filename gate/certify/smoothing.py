"""Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019): an L2 certificate from forward passes alone.

The smoothed classifier ``g(x) = argmax_c P(f(x + e) = c)``, ``e ~ N(0, sigma^2 I)``, is constant on the L2
ball of radius ``sigma * Phi^-1(pA)`` around ``x`` whenever its top class has probability ``pA > 1/2``
(the paper's Theorem 1). :func:`certify` runs the paper's CERTIFY: ``n0`` selection draws pick the top
class ``cA``, ``n`` further draws count it, and the one-sided Clopper–Pearson lower bound ``pA_lower`` at
level ``1 - alpha`` gives the radius ``sigma * Phi^-1(pA_lower)``; with probability at least ``1 - alpha``
over the draws, ``g`` predicts ``cA`` everywhere in that ball. It abstains when ``pA_lower <= 1/2``.
The same ``n`` counts also give the paper's PREDICT (a two-sided binomial test of the top two counts).

The certificate is for the **unclipped** smoothed classifier: the noisy copies ``x + sigma * e`` are handed
to the model as they are, outside the input range where the noise takes them. Clipping them would smooth
a different base classifier (``f`` composed with the clip), which is also certifiable, but not the one a
reader of Cohen et al. expects; the models gate certifies accept any float input.

Noise comes from gate's per-sample counter-based streams, keyed by the sample's data set index: draw ``j``
of a sample is row ``j % DRAWS_PER_TAG`` of the block with tag ``j // DRAWS_PER_TAG``, in the stream of its
phase (selection or estimation). The batch size only decides how the copies are grouped into forward
passes, so a sample's certificate is the same alone or among others, in any shard, at any batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as scipy_stats

from gate.errors import CheckError
from gate.randomness.streams import SampleRandom
from gate.stats import clopper_pearson

Scores = Callable[[torch.Tensor], torch.Tensor]
"""A batch in the input range ``[B, *shape]`` -> scores ``[B, classes]`` (forward passes only)."""

DRAWS_PER_TAG = 32
"""Noise draws per random-stream tag: part of the noise's definition (changing it changes every
certificate), independent of the batch size, and small so that one tag's block of a large image stays small."""

_STREAM = 0x52534D  # "RSM": smoothing's stream family, apart from the attacks' and export parity's
_SELECTION, _ESTIMATION = 0, 1


@dataclass(frozen=True)
class SmoothingResult:
    """CERTIFY and PREDICT for each sample; all tensors are on the CPU, one row per sample of ``x``.

    - ``prediction`` ``[N]`` int64: CERTIFY's class ``cA``, ``-1`` where it abstains (``p_lower <= 0.5``).
    - ``p_lower`` ``[N]`` float64: the one-sided Clopper–Pearson lower bound of ``pA`` at level ``1 - alpha``
      from the ``n`` estimation counts of ``cA``.
    - ``radius`` ``[N]`` float64: ``sigma * Phi^-1(p_lower)`` where ``p_lower > 0.5``, else ``0.0``.
    - ``predict`` ``[N]`` int64: PREDICT's class (the top count, when a two-sided binomial test of the top
      two counts rejects a tie at ``alpha``), ``-1`` where it abstains.
    - ``counts`` ``[N, classes]`` int64: the ``n`` estimation draws' class counts.
    - ``selected`` ``[N]`` int64: ``cA``, the most frequent class of the ``n0`` selection draws (also where
      CERTIFY abstains).
    - ``predict_p_value`` ``[N]`` float64: PREDICT's binomial p-value.
    """

    prediction: torch.Tensor
    p_lower: torch.Tensor
    radius: torch.Tensor
    predict: torch.Tensor
    counts: torch.Tensor
    selected: torch.Tensor
    predict_p_value: torch.Tensor


def certify(
    scores: Scores,
    x: torch.Tensor,
    index: torch.Tensor,
    *,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch: int,
    seed: int,
    predict_class: Callable[[torch.Tensor], torch.Tensor] | None = None,
    deadline_check: Callable[[], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> SmoothingResult:
    """Certify each sample of ``x`` under Gaussian smoothing (Cohen et al. 2019, CERTIFY and PREDICT).

    Args:
        scores: the base classifier, ``[B, *shape] -> [B, classes]``, called without gradients on at most
            ``batch`` noisy copies at a time (copies of several samples may share a call).
        x: ``[N, *shape]`` samples in the input range; the noise and the forward passes stay on its device.
        index: ``[N]`` the samples' data set indices, which key their noise streams.
        sigma: the noise's standard deviation, in the input range.
        n0: selection draws per sample (which class to certify).
        n: estimation draws per sample (how sure it is).
        alpha: failure probability of each certificate, in ``(0, 0.5)``.
        batch: forward passes per ``scores`` call.
        seed: the run's seed.
        predict_class: scores -> class ids ``[B]`` (default: argmax).
        deadline_check: called before every forward chunk; raise from it to stop.
        progress: called after every forward chunk with the number of forward passes it made (an increment,
            like ``Progress.advance``); a sample costs ``n0 + n`` in all.

    Returns:
        A :class:`SmoothingResult` on the CPU.

    Raises:
        ValueError: on invalid arguments.
        CheckError: when the model returns NaN or infinite scores, or ``predict_class`` a class id outside
            ``[0, classes)``: a certificate is never computed from them.
    """
    _validate(x, index, sigma=sigma, n0=n0, n=n, alpha=alpha, batch=batch)
    sampler = _NoisyCounts(
        scores, sigma=float(sigma), batch=int(batch), seed=int(seed),
        predict_class=predict_class, deadline_check=deadline_check, progress=progress,
    )  # fmt: skip
    index = index.to(device=x.device, dtype=torch.int64)
    selected = sampler.count(x, index, _SELECTION, int(n0)).argmax(dim=1)
    sampler.raise_if_invalid()  # before spending the n estimation passes
    counts = sampler.count(x, index, _ESTIMATION, int(n))
    sampler.raise_if_invalid()
    return _decide(counts.cpu(), selected.cpu(), sigma=float(sigma), n=int(n), alpha=float(alpha))


def _validate(
    x: torch.Tensor, index: torch.Tensor, *, sigma: float, n0: int, n: int, alpha: float, batch: int
) -> None:
    if x.dim() < 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a batch [N, *shape] with N >= 1, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    if index.shape != (x.shape[0],):
        raise ValueError(f"index must have shape ({x.shape[0]},), got {tuple(index.shape)}")
    if not (sigma > 0 and np.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha!r}")
    for name, value in (("n0", n0), ("n", n), ("batch", batch)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class _NoisyCounts:
    """Class counts of a sample's noisy copies, evaluated in forward chunks of ``batch`` copies.

    Non-finite scores and out-of-range class ids are collected in flags on the device (read once, at the
    end) instead of a host sync per chunk.
    """

    def __init__(
        self,
        scores: Scores,
        *,
        sigma: float,
        batch: int,
        seed: int,
        predict_class: Callable[[torch.Tensor], torch.Tensor] | None,
        deadline_check: Callable[[], None] | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.scores = scores
        self.sigma = sigma
        self.batch = batch
        self.seed = seed
        self.predict_class = predict_class
        self.deadline_check = deadline_check
        self.progress = progress
        self.classes: int | None = None
        self.finite: torch.Tensor | None = None
        self.in_range: torch.Tensor | None = None

    def count(self, x: torch.Tensor, index: torch.Tensor, phase: int, draws: int) -> torch.Tensor:
        """``[N, classes]`` int64 counts of the classes predicted on ``draws`` noisy copies of each sample."""
        counts: torch.Tensor | None = None
        for owner, noisy in _chunks(self._blocks(x, index, phase, draws), self.batch):
            if self.deadline_check is not None:
                self.deadline_check()
            classes = self._classify(noisy)
            assert self.classes is not None  # set by the first _classify
            if counts is None:
                counts = torch.zeros(x.shape[0] * self.classes, dtype=torch.int64, device=x.device)
            cells = owner * self.classes + classes.clamp(0, self.classes - 1)
            counts += torch.bincount(cells, minlength=counts.numel())
            if self.progress is not None:
                self.progress(int(noisy.shape[0]))
        assert counts is not None and self.classes is not None  # draws >= 1
        return counts.view(x.shape[0], self.classes)

    def _blocks(
        self, x: torch.Tensor, index: torch.Tensor, phase: int, draws: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(owner row, noisy copy)`` pairs, one tag's block of draws for a group of samples at a time.

        A group holds about ``batch / DRAWS_PER_TAG`` samples, so that one block fills about one chunk.
        """
        group = max(1, self.batch // DRAWS_PER_TAG)
        shape = tuple(x.shape[1:])
        for start in range(0, x.shape[0], group):
            rows = torch.arange(start, min(start + group, x.shape[0]), device=x.device)
            rng = SampleRandom(index[rows], (self.seed, _STREAM, phase))
            centre = x[rows].unsqueeze(1)
            for tag, first in enumerate(range(0, draws, DRAWS_PER_TAG)):
                size = min(DRAWS_PER_TAG, draws - first)
                noise = rng.normal(tag, (size, *shape), dtype=x.dtype)
                noisy = (centre + self.sigma * noise).flatten(0, 1)  # unclipped: see the module docstring
                yield rows.repeat_interleave(size), noisy

    def _classify(self, noisy: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            output = self.scores(noisy)
            if output.dim() != 2 or output.shape[0] != noisy.shape[0]:
                raise CheckError(
                    f"the model returned scores of shape {tuple(output.shape)} for {noisy.shape[0]} noisy "
                    f"inputs; expected [{noisy.shape[0]}, classes]"
                )
            classes = output.argmax(dim=1) if self.predict_class is None else self.predict_class(output)
        if classes.numel() != noisy.shape[0]:
            raise CheckError(
                f"predict_class returned {classes.numel()} class ids for {noisy.shape[0]} inputs"
            )
        if self.classes is None:
            self.classes = int(output.shape[1])
            self.finite = torch.ones((), dtype=torch.bool, device=output.device)
            self.in_range = torch.ones((), dtype=torch.bool, device=output.device)
        assert self.finite is not None and self.in_range is not None
        classes = classes.to(device=noisy.device, dtype=torch.int64).reshape(-1)
        self.finite &= torch.isfinite(output).all().to(self.finite.device)
        self.in_range &= ((classes >= 0) & (classes < self.classes)).all().to(self.in_range.device)
        return classes

    def raise_if_invalid(self) -> None:
        if self.finite is not None and not bool(self.finite):
            raise CheckError("the model returned NaN or infinite scores on noisy inputs: no certificate")
        if self.in_range is not None and not bool(self.in_range):
            raise CheckError(f"predict_class returned class ids outside [0, {self.classes}): no certificate")


def _chunks(
    blocks: Iterator[tuple[torch.Tensor, torch.Tensor]], batch: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Regroup ``(owner, noisy)`` blocks into chunks of exactly ``batch`` copies (the last one smaller)."""
    owners: list[torch.Tensor] = []
    copies: list[torch.Tensor] = []
    pending = 0
    for owner, noisy in blocks:
        owners.append(owner)
        copies.append(noisy)
        pending += owner.shape[0]
        if pending < batch:
            continue
        owner_all, noisy_all = torch.cat(owners), torch.cat(copies)
        full = pending - pending % batch
        for start in range(0, full, batch):
            yield owner_all[start : start + batch], noisy_all[start : start + batch]
        owners, copies = [owner_all[full:]], [noisy_all[full:]]
        pending -= full
    if pending:
        yield torch.cat(owners), torch.cat(copies)


def _decide(
    counts: torch.Tensor, selected: torch.Tensor, *, sigma: float, n: int, alpha: float
) -> SmoothingResult:
    """CERTIFY's bound and radius, and PREDICT's test, from the counts (on the host, with scipy)."""
    rows = torch.arange(counts.shape[0])
    count_a = counts[rows, selected].tolist()
    p_lower = torch.tensor([one_sided_lower_bound(k, n, alpha) for k in count_a], dtype=torch.float64)
    certified = p_lower > 0.5
    radius = torch.zeros_like(p_lower)
    radius[certified] = sigma * torch.from_numpy(scipy_stats.norm.ppf(p_lower[certified].numpy()))
    prediction = torch.where(certified, selected, torch.full_like(selected, -1))
    predicted, p_value = predict_test(counts, alpha)
    return SmoothingResult(
        prediction=prediction, p_lower=p_lower, radius=radius, predict=predicted, counts=counts,
        selected=selected.clone(), predict_p_value=p_value,
    )  # fmt: skip


def one_sided_lower_bound(successes: int, n: int, alpha: float) -> float:
    """The one-sided Clopper–Pearson lower bound at level ``1 - alpha``: ``Beta.ppf(alpha, k, n - k + 1)``.

    It is the lower end of the two-sided exact interval at confidence ``1 - 2 * alpha``.
    """
    return clopper_pearson(successes, n, 1.0 - 2.0 * alpha).lower


def predict_test(counts: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cohen et al.'s PREDICT on ``[N, classes]`` counts: the top class, or ``-1`` when the two-sided
    binomial test of the top two counts ``(nA, nA + nB, 1/2)`` has a p-value above ``alpha``.

    For ``p = 1/2`` the binomial law is symmetric, so the two-sided p-value (``scipy.stats.binomtest``'s) is
    ``min(1, 2 * P(X <= nB))``; computed this way it is one vectorised call.
    """
    order = counts.argsort(dim=1, descending=True, stable=True)  # ties: the lowest class id first
    top = order[:, 0]
    count_a = counts.gather(1, order[:, :1]).squeeze(1)
    count_b = counts.gather(1, order[:, 1:2]).squeeze(1) if counts.shape[1] > 1 else torch.zeros_like(count_a)
    tail = scipy_stats.binom.cdf(count_b.numpy(), (count_a + count_b).numpy(), 0.5)
    p_value = torch.from_numpy(np.minimum(1.0, 2.0 * tail)).to(torch.float64)
    return torch.where(p_value <= alpha, top, torch.full_like(top, -1)), p_value


__all__ = ["DRAWS_PER_TAG", "Scores", "SmoothingResult", "certify", "one_sided_lower_bound", "predict_test"]
