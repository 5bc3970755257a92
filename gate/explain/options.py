"""The settings shared by every attribution method, and the score-function type they explain."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from gate.errors import CheckError

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""A batch in the model's input range -> logits ``[N, classes]``; called without gradients (e.g. ONNX Runtime)."""

Baseline = float | Literal["mean", "zero"]


@dataclass(frozen=True)
class AttributionOptions:
    """Settings for the attribution methods; each method reads only the fields it needs.

    Attributes:
        steps: Integration steps of integrated gradients.
        baseline: Reference input of integrated gradients, occlusion and RISE: a constant, ``"zero"``,
            or ``"mean"`` (each sample's per-channel mean, so the reference keeps the image's brightness;
            images only).
        samples: Noisy copies averaged by smoothgrad.
        noise: Smoothgrad's sigma as a fraction of ``value_range`` (Smilkov et al. suggest 0.1 to 0.2).
        window: Side of the square occlusion patch, in pixels (images; on features occlusion replaces one
            feature at a time); ``None``: ``max(2, shorter side // 8)``
            (:func:`gate.explain.occlusion.default_window`).
        stride: Step of the occlusion patch, in pixels (images); ``None``: half the window, at least 1.
        masks: Random masks drawn by RISE (Petsiuk et al. use 4,000 to 8,000 at ImageNet size).
        mask_grid: Cells per side of RISE's coarse binary grid before upsampling (7 in the paper).
        mask_probability: Probability that a RISE grid cell keeps the input.
        value_range: ``(low, high)`` of valid inputs; scales smoothgrad's noise.
        batch_size: Most inputs passed to the model in one call; bounds memory on large images.
    """

    steps: int = 32
    baseline: Baseline = "zero"
    samples: int = 16
    noise: float = 0.15
    window: int | None = None
    stride: int | None = None
    masks: int = 1000
    mask_grid: int = 7
    mask_probability: float = 0.5
    value_range: tuple[float, float] = (0.0, 1.0)
    batch_size: int = 256

    def __post_init__(self) -> None:
        positive = {
            "steps": self.steps,
            "samples": self.samples,
            **{
                name: value
                for name, value in (("window", self.window), ("stride", self.stride))
                if value is not None
            },
            "masks": self.masks,
            "mask_grid": self.mask_grid,
            "batch_size": self.batch_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise CheckError(f"attribution option {name} must be a positive integer, got {value}")
        if self.noise < 0:
            raise CheckError(f"attribution option noise must be >= 0, got {self.noise}")
        if not 0.0 < self.mask_probability <= 1.0:
            raise CheckError(
                f"attribution option mask_probability must be in (0, 1], got {self.mask_probability}"
            )
        low, high = self.value_range
        if not high > low:
            raise CheckError(
                f"attribution option value_range must be (low, high) with high > low, got {self.value_range}"
            )
        if isinstance(self.baseline, str) and self.baseline not in ("mean", "zero"):
            raise CheckError(
                f"attribution option baseline must be a number, 'mean' or 'zero', got {self.baseline!r}"
            )
