"""Masked digits CNNs for the adaptive-attack evidence (issue 21): each hides the trained ``DigitsCNN``
behind one trick that stalls a plain gradient attack while keeping clean accuracy.

Every wrapper keeps the classifier as ``self.net`` and has no other saved state, so the standard CNN's
state dict loads under the prefix ``net.`` (``masked_weights`` in conftest.py writes it that way). Every
one exports with the dynamo exporter and runs in ONNX Runtime; the randomised ones stay random there
(RandomUniformLike, RandomNormalLike). ``FACTORIES`` names them for the benchmark and the peers test.

The tricks, and the papers that showed how to get past them:

* a non-differentiable input step (rounding; a JPEG-like transform behind ``detach()``): BPDA, Athalye et
  al. 2018, "Obfuscated gradients give a false sense of security";
* outputs that saturate the cross-entropy (logits x 1e4, temperature 100, a softmax or sigmoid head):
  a margin loss on the logits, Carlini & Wagner 2017;
* randomness at inference (random resize-and-pad, Xie et al. 2018; Gaussian noise): EOT, Athalye et al.
  2018;
* a detector that answers a fixed class away from the data (comparison and select): attack the classifier
  and stay where the detector is quiet, Carlini & Wagner 2017, "Adversarial examples are not easily
  detected".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from masked_models import QuantizedInputCNN
from torch import nn

from gate.demo.models import DigitsCNN

GREY_LEVELS = 16  # the digits' pixels are integers 0..16 divided by 16: the data lies on this grid
LOGIT_SCALE = 1e4
TEMPERATURE = 100.0
RESIZE_MIN = 0.9  # smallest scale of the random resize; on 8x8 images a smaller one costs accuracy
NOISE_SIGMA = 0.1
DETECTOR_THRESHOLD = 0.01  # mean distance to the 1/16 grid: exactly 0 on every clean digit
DETECTOR_CLASS = 0
DETECTOR_LOGIT = 1e4


class _Wrapped(nn.Module):
    """The trained digits CNN as ``self.net``: its weights load under ``net.``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = DigitsCNN()


class ScaledLogitsCNN(_Wrapped):
    """Logits times ``scale``: the argmax is unchanged, the float32 softmax is one-hot and CE's gradient 0."""

    def __init__(self, scale: float = LOGIT_SCALE) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scale


class SoftmaxHeadCNN(_Wrapped):
    """Returns probabilities: a loss that treats them as logits barely moves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


class SigmoidHeadCNN(_Wrapped):
    """Per-class sigmoids: saturated at 1 for confident samples, whose gradient is then 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


def dct_matrix(size: int = 8) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D``: ``D @ X @ D.T`` is the 2-D transform of a ``size``-square block."""
    k = torch.arange(size, dtype=torch.float64)
    matrix = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * size)) * math.sqrt(2 / size)
    matrix[0] /= math.sqrt(2)
    return matrix.to(torch.float32)


def jpeg_quantisation_table(size: int = 8, step: float = 0.05) -> torch.Tensor:
    """A JPEG-like table for inputs in [0, 1]: coarser steps at higher frequencies."""
    k = torch.arange(size, dtype=torch.float32)
    return step * (1 + (k[:, None] + k[None, :]) / 2)


class DetachedJPEGCNN(_Wrapped):
    """JPEG-like compression (one 8x8 DCT block, coefficients rounded by a quantisation table) behind a
    ``detach()``: the input gradient is disconnected, not just zero."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("dct", dct_matrix(), persistent=False)
        self.register_buffer("table", jpeg_quantisation_table(), persistent=False)

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = self.dct @ x @ self.dct.T
        quantised = torch.round(coefficients / self.table) * self.table
        return (self.dct.T @ quantised @ self.dct).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.compress(x).detach())


def random_resize_and_pad(x: torch.Tensor, smallest: float = RESIZE_MIN) -> torch.Tensor:
    """Shrink each image by a random factor in [smallest, 1] and place it at a random offset, zero padded
    (Xie et al. 2018); ``affine_grid``/``grid_sample`` export as GridSample, ``rand_like`` as
    RandomUniformLike."""
    draws = torch.rand_like(x[:, 0, 0, :3])  # [N, 3]: scale, horizontal and vertical offsets
    scale = 1 - (1 - smallest) * draws[:, 0]
    inverse = 1 / scale
    room = inverse - 1  # the offset that keeps the shrunk image inside the frame
    shift_x, shift_y = (2 * draws[:, 1] - 1) * room, (2 * draws[:, 2] - 1) * room
    zero = torch.zeros_like(scale)
    theta = torch.stack(
        [torch.stack([inverse, zero, shift_x], 1), torch.stack([zero, inverse, shift_y], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RandomResizeCNN(_Wrapped):
    """A fresh random resize-and-pad on every call, also in the deployed model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(random_resize_and_pad(x))


class GaussianNoiseCNN(_Wrapped):
    """Adds fresh Gaussian noise to the input on every call (not randomized smoothing: one draw, no vote)."""

    def __init__(self, sigma: float = NOISE_SIGMA) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + self.sigma * torch.randn_like(x))


def grid_distance(x: torch.Tensor) -> torch.Tensor:
    """Per sample, the mean distance of the pixels to the data's 1/16 grid (0 on every clean digit)."""
    snapped = torch.round(x * GREY_LEVELS) / GREY_LEVELS
    return (x - snapped).abs().flatten(1).mean(1)


class DetectorCNN(_Wrapped):
    """Answers class ``DETECTOR_CLASS`` with a huge logit wherever the input is off the data's grid.

    Off the grid the logits are a constant, so their gradient is 0: a gradient attack that trips the
    detector on a sample of that class stays there, and the sample looks robust. Elsewhere the detector
    is a misclassification like any other.
    """

    def __init__(self) -> None:
        super().__init__()
        detected = torch.zeros(10)
        detected[DETECTOR_CLASS] = DETECTOR_LOGIT
        self.register_buffer("detected", detected, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        far = (grid_distance(x) > DETECTOR_THRESHOLD)[:, None]
        return torch.where(far, self.detected.expand_as(logits), logits)


def quantized_cnn() -> QuantizedInputCNN:
    """Rounds the input to 17 grey levels (the gradient-masking tests' model)."""
    return QuantizedInputCNN()


def scaled_logits_cnn() -> ScaledLogitsCNN:
    return ScaledLogitsCNN(LOGIT_SCALE)


def temperature_cnn() -> ScaledLogitsCNN:
    """Logits times 100, as deployed after distillation-style training at temperature 100."""
    return ScaledLogitsCNN(TEMPERATURE)


def softmax_cnn() -> SoftmaxHeadCNN:
    return SoftmaxHeadCNN()


def sigmoid_cnn() -> SigmoidHeadCNN:
    return SigmoidHeadCNN()


def detached_jpeg_cnn() -> DetachedJPEGCNN:
    return DetachedJPEGCNN()


def random_resize_cnn() -> RandomResizeCNN:
    return RandomResizeCNN()


def gaussian_noise_cnn() -> GaussianNoiseCNN:
    return GaussianNoiseCNN(NOISE_SIGMA)


def detector_cnn() -> DetectorCNN:
    return DetectorCNN()


FACTORIES = {
    "quantized_cnn": quantized_cnn,
    "scaled_logits_cnn": scaled_logits_cnn,
    "temperature_cnn": temperature_cnn,
    "softmax_cnn": softmax_cnn,
    "sigmoid_cnn": sigmoid_cnn,
    "detached_jpeg_cnn": detached_jpeg_cnn,
    "random_resize_cnn": random_resize_cnn,
    "gaussian_noise_cnn": gaussian_noise_cnn,
    "detector_cnn": detector_cnn,
}
RANDOMISED = frozenset({"random_resize_cnn", "gaussian_noise_cnn"})


def wrapped_state_dict(base: nn.Module) -> dict[str, torch.Tensor]:
    """The base CNN's weights under ``net.``, as every factory here loads them."""
    return {f"net.{key}": value for key, value in base.state_dict().items()}
