from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from gate.explain import save_heatmaps


def test_writes_upscaled_pictures_with_mask_outline_and_labels(tmp_path):
    x = torch.rand((5, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    attribution = torch.randn((5, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.zeros((5, 8, 8))
    mask[:, 2:6, 2:6] = 1
    paths = save_heatmaps(
        tmp_path / "maps" / "digits",
        x,
        attribution,
        mask=mask,
        labels=[f"y={i}" for i in range(5)],
        max_items=3,
    )
    assert [p.name for p in paths] == ["digits_000.png", "digits_001.png", "digits_002.png"]
    with Image.open(paths[0]) as image:
        picture = np.asarray(image)
    assert picture.shape[1] == 128 and picture.shape[0] > 128  # caption strip below the 128 px image
    green = (picture[..., 0] == 0) & (picture[..., 1] == 200) & (picture[..., 2] == 0)
    assert green[:128].any() and not green[:128, :32].any()  # outline only around the central square


def test_colour_images_without_mask(tmp_path):
    x = torch.rand((2, 3, 20, 30))
    paths = save_heatmaps(tmp_path / "rgb", x, torch.zeros_like(x))
    assert len(paths) == 2
    with Image.open(paths[1]) as image:
        assert image.size == (5 * 30, 5 * 20)  # smallest whole factor reaching 128 px on the longer side


def test_small_images_are_upscaled_not_tiled(tmp_path):
    """One bright pixel in the top-left corner stays one bright block in the top-left corner."""
    import numpy as np
    import torch
    from PIL import Image

    from gate.explain import save_heatmaps

    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 0, 0] = 1.0
    (path,) = save_heatmaps(tmp_path / "h", x, torch.zeros_like(x), size=64)
    picture = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    block = picture.shape[0] // 8
    assert picture[:block, :block].min() > 200
    assert picture[block:, :].max() < 50 and picture[:block, block:].max() < 50
