"""A background "Clever Hans" for the ``background`` tests: 3x16x16 images of three shapes on coloured
backgrounds, and a small CNN trained to read either the background or the shape.

Each image has an 8x8 object box in the centre (the mask: a mid-grey patch with the class's shape in
white: a square, a cross or a ring) on a background tinted red, green or blue with a noise texture. In
the evaluation data, as in the photos of the paper, the tint goes with the class. The background reader
is trained on such data with the shape mostly scrambled, so the tint is its best cue; the mixed model is
trained on random tints (Xiao et al.'s Mixed-Rand training), so only the shape predicts the label.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CLASSES = 3
SIZE = 16
BOX = slice(4, 12)  # the object box, rows and columns


def _shape(label: int) -> np.ndarray:
    """The class's shape inside the 8x8 object box: a square, a cross or a ring."""
    shape = np.zeros((8, 8), dtype=bool)
    if label == 0:
        shape[2:6, 2:6] = True
    elif label == 1:
        shape[3:5, :] = True
        shape[:, 3:5] = True
    else:
        shape[1:7, 1:7] = True
        shape[2:6, 2:6] = False
    return shape


def make_images(
    shapes: np.ndarray, tints: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 3, 16, 16]`` in [0, 1] with the given shape and background tint per sample, and masks."""
    n = len(shapes)
    x = np.empty((n, 3, SIZE, SIZE), dtype=np.float32)
    for i, (shape, tint) in enumerate(zip(shapes, tints, strict=True)):
        colour = np.full(3, 0.25, dtype=np.float32)
        colour[tint] = 0.75
        x[i] = colour[:, None, None] + rng.uniform(-0.2, 0.2, (3, SIZE, SIZE)).astype(np.float32)
        box = np.full((3, 8, 8), 0.45, dtype=np.float32) + rng.uniform(-0.05, 0.05, (3, 8, 8)).astype(
            np.float32
        )
        box[:, _shape(int(shape))] = 0.95
        x[i, :, BOX, BOX] = box
    mask = np.zeros((n, SIZE, SIZE), dtype=np.float32)
    mask[:, BOX, BOX] = 1.0
    return x.clip(0, 1), mask


def evaluation_data(n: int = 150, seed: int = 1) -> dict[str, np.ndarray]:
    """Held-out data whose background tint goes with the class (the shortcut is there to take)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    x, mask = make_images(y, y, rng)
    return {"x": x, "y": y.astype(np.int64), "mask": mask}


def training_data(reads: str, n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``reads="background"``: tints follow the label, shapes mostly random; ``"shape"``: random tints."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    random_classes = rng.integers(0, CLASSES, n)
    if reads == "background":
        shapes = np.where(rng.random(n) < 0.3, y, random_classes)
        tints = y
    else:
        shapes, tints = y, random_classes
    x, _ = make_images(shapes, tints, rng)
    return x, y


class BackgroundCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def trained_cnn(reads: str, epochs: int = 6) -> BackgroundCNN:
    """A CNN trained on :func:`training_data` (a second or two on a CPU)."""
    torch.manual_seed(0)
    x, y = map(torch.from_numpy, training_data(reads))
    model = BackgroundCNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for rows in torch.randperm(len(x), generator=order).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
            optimiser.step()
    return model.eval()
