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
        # the smallest whole factor reaching 128 px on the longer side, and the colour bar beneath
        assert image.width == 5 * 30 and image.height > 5 * 20


def test_small_images_are_upscaled_not_tiled(tmp_path):
    """One bright pixel in the top-left corner stays one bright block in the top-left corner."""
    import numpy as np
    import torch
    from PIL import Image

    from gate.explain import save_heatmaps

    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 0, 0] = 1.0
    (path,) = save_heatmaps(tmp_path / "h", x, torch.zeros_like(x), size=64)
    picture = np.asarray(Image.open(path).convert("L"), dtype=np.float64)[:64]  # above the colour bar
    block = picture.shape[0] // 8
    assert picture[:block, :block].min() > 200
    assert picture[block:, :].max() < 50 and picture[:block, block:].max() < 50


def test_a_colour_bar_with_the_relevance_range_runs_under_each_picture(tmp_path):
    from gate.explain.heatmap import BAR_PX, colour_bar

    x = torch.rand((1, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    attribution = torch.linspace(-0.5, 0.25, 64).reshape(1, 1, 8, 8)
    (path,) = save_heatmaps(tmp_path / "h", x, attribution, labels=["y=3 pred=8 (0.97)"])
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
    bar = picture[128 + 4 : 128 + 4 + BAR_PX]
    assert (bar == colour_bar(128)).all()
    left, middle, right = bar[0, 0], bar[0, 64], bar[0, -1]
    assert left[2] > left[0] + 100 and right[0] > right[2] + 100  # blue for -max, red for +max
    assert abs(middle - 128).max() < 10  # 0: the input alone
    labels = picture[128 + 4 + BAR_PX :] < 100  # dark text under the bar: the range's labels, the caption
    rows = np.flatnonzero(labels.all(axis=2).any(axis=1))
    assert rows.size and np.ptp(rows) >= 20  # two lines of text at a reading size, not 7 px
    assert labels[:, :30].any() and labels[:, -30:].any()  # "-0.5" at the left, "+0.5" at the right
