"""``--batch-size auto``: the largest batch that fits the device, chosen once per run.

On CPU a rule from the sample size keeps one batch's activations under a memory budget (the cores are
saturated long before memory runs out, so bigger batches only cost memory). On CUDA the batch is
measured: one forward+backward of the gradient model and one ``scores()`` call at a small probe batch
give the bytes per sample, the free device memory (with headroom) gives the candidate, and the candidate
is confirmed by running it, halving on out-of-memory.

The choice depends only on the device, the model, the sample shape and the size of the whole (unsharded)
selection, so every shard of a run on the same kind of machine picks the same batch size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from gate.errors import ModelError

if TYPE_CHECKING:
    from gate.model import ModelUnderTest

logger = logging.getLogger(__name__)

MAX_BATCH = 4096
"""No device gets more: past it throughput stops growing and a single batch's loss of work on a timeout grows."""
CPU_MIN_BATCH = 32
CPU_MAX_BATCH = 1024
CPU_ACTIVATION_BUDGET = 256 << 20
"""Bytes of activations one CPU batch may hold (forward and backward together)."""
ACTIVATION_FACTOR = 64
"""Activation bytes per input byte a typical small CNN keeps for its backward pass (a rule of thumb)."""
CUDA_HEADROOM = 0.7
"""Fraction of the free device memory a batch may use; attacks keep a few batch-sized tensors besides."""
CUDA_PROBE_BATCH = 8

BatchProbe = Callable[[int], int]
"""Runs one forward+backward (and a ``scores()`` call) at a batch size; returns the device bytes it used.

Raises ``torch.OutOfMemoryError`` when the batch does not fit.
"""


def largest_power_of_two(value: float) -> int:
    """The largest power of two ``<= value`` (at least 1)."""
    return 1 << max(0, math.floor(math.log2(value))) if value >= 1 else 1


def cpu_batch_size(
    sample_shape: tuple[int, ...],
    samples: int,
    *,
    budget_bytes: int = CPU_ACTIVATION_BUDGET,
    minimum: int = CPU_MIN_BATCH,
    maximum: int = CPU_MAX_BATCH,
) -> int:
    """The CPU batch size: a power of two whose activations stay under ``budget_bytes``, within [min, max].

    Never more than ``samples`` (one batch then holds the whole selection).

    Args:
        sample_shape: one input's shape, without the batch axis.
        samples: how many samples the run evaluates (the unsharded selection).
        budget_bytes: the activation memory one batch may use.
        minimum, maximum: the range the power of two is clamped to.

    Returns:
        The batch size, at least 1.
    """
    per_sample = 4 * math.prod(sample_shape) * ACTIVATION_FACTOR
    batch = min(max(largest_power_of_two(budget_bytes / per_sample), minimum), maximum)
    return max(1, min(batch, samples))


def cuda_batch_size(
    probe: BatchProbe, free_bytes: int, samples: int, *, headroom: float = CUDA_HEADROOM, cap: int = MAX_BATCH
) -> int:
    """The largest power-of-two batch whose measured use fits ``headroom`` of ``free_bytes``.

    Args:
        probe: runs a batch and returns the bytes it used (raises ``torch.OutOfMemoryError`` if it cannot).
        free_bytes: free device memory before probing.
        samples: how many samples the run evaluates; the batch never exceeds it.
        headroom: the fraction of ``free_bytes`` a batch may use.
        cap: the largest batch considered.

    Returns:
        The batch size, at least 1 (if even one sample does not fit, the checks report the out-of-memory).
    """
    cap = max(1, min(cap, samples))
    allowed = headroom * free_bytes
    small = min(CUDA_PROBE_BATCH, cap)
    while True:
        try:
            used = probe(small)
            break
        except torch.OutOfMemoryError:
            if small == 1:
                return 1
            small //= 2
    fitting = largest_power_of_two(allowed * small / max(used, 1))
    candidate = cap if fitting >= cap else fitting  # cap: one batch may hold the whole selection
    while candidate > small:
        try:
            if probe(candidate) <= allowed:
                return candidate
        except torch.OutOfMemoryError:
            logger.debug("batch %d does not fit; halving", candidate)
        candidate = largest_power_of_two(candidate - 1) if candidate & (candidate - 1) else candidate // 2
    return small


def _cuda_probe(model: ModelUnderTest, device: torch.device) -> BatchProbe:
    """A probe running the gradient model's forward+backward and the session on random inputs."""
    generator = torch.Generator().manual_seed(0)  # private: the run's RNG stays untouched

    def probe(batch: int) -> int:
        x = torch.rand((batch, *model.input_shape), generator=generator).to(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        free_before = torch.cuda.mem_get_info(device)[0]
        allocated_before = torch.cuda.memory_allocated(device)
        try:
            gradient_model = model.gradient_model
            if gradient_model is not None:
                x.requires_grad_(True)
                gradient_model(x).float().logsumexp(1).sum().backward()
                x = x.detach()
            model.scores(x)
            torch.cuda.synchronize(device)
            torch_peak = torch.cuda.max_memory_allocated(device) - allocated_before
            device_used = free_before - torch.cuda.mem_get_info(device)[0]  # includes ONNX Runtime's arena
            return max(torch_peak, device_used)
        except ModelError as error:
            if "alloc" in error.message.lower():  # ONNX Runtime's out-of-memory arrives as a failed run
                raise torch.OutOfMemoryError(error.message) from error
            raise
        finally:
            del x
            if gradient_model is not None:
                gradient_model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    return probe


def choose_batch_size(
    requested: int | str,
    model: ModelUnderTest,
    device: torch.device,
    sample_shape: tuple[int, ...],
    samples: int,
) -> int:
    """The batch size a run uses: ``requested`` if it is a number, else the rule for ``device`` (``auto``)."""
    if requested != "auto":
        return int(requested)
    if device.type == "cuda":
        free_bytes = torch.cuda.mem_get_info(device)[0]
        chosen = cuda_batch_size(_cuda_probe(model, device), free_bytes, samples)
    else:
        chosen = cpu_batch_size(sample_shape, samples)
    logger.info("--batch-size auto chose %d on %s", chosen, device)
    return chosen
