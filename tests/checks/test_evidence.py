"""Evidence pictures: example pairs legible at a glance, and the ε-curve with the policy's marks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gate.checks.evidence import (
    TILE,
    pair_caption,
    perturbation_image,
    predicted_confidence,
    save_epsilon_curve,
    save_example_pairs,
    to_tile,
)
from gate.figures import FONT_PX, font

ROWS = ("clean", "adversarial", "perturbation")


def rows_of_tiles(path, tile: int) -> list[np.ndarray]:
    """Horizontal bands of the sheet that hold tiles: runs of at least ``tile`` rows that each have at
    least a tile's width of non-white pixels (a line of text is shorter than that)."""
    pixels = np.asarray(Image.open(path).convert("L"))
    filled = (pixels < 250).sum(axis=1) >= tile
    bands, start = [], None
    for y, on in enumerate([*filled, False]):
        if on and start is None:
            start = y
        elif not on and start is not None:
            if y - start >= tile:
                bands.append(pixels[start:y])
            start = None
    return bands


def test_small_images_are_upscaled_nearest_neighbour_to_the_tile_size() -> None:
    for side in (8, 28, 32):
        x = torch.rand(1, side, side)
        tile = to_tile(x, (0.0, 1.0))
        assert min(tile.size) >= TILE  # 28 x 28 reaches 112, not 84
        factor = tile.width // side
        pixels = np.asarray(tile)[:, :, 0]
        assert (pixels[::factor, ::factor] == pixels[factor - 1 :: factor, factor - 1 :: factor]).all()


def test_the_perturbation_spans_the_colour_range_with_mid_grey_at_zero() -> None:
    delta = torch.zeros(1, 8, 8)
    delta[0, 0, 0], delta[0, 0, 1] = 0.03, -0.015
    image, scale = perturbation_image(delta)
    pixels = np.asarray(image)[:, :, 0]
    factor = image.width // 8
    assert scale == pytest.approx(0.03)
    assert pixels[0, 0] == 255 and pixels[0, factor] == 64 and pixels[-1, -1] == 128
    flat, zero = perturbation_image(torch.zeros(3, 4, 4))
    assert zero == 0.0 and (np.asarray(flat) == 128).all()


def test_pairs_have_three_rows_of_upscaled_tiles_and_their_captions(tmp_path) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 8, 8, generator=generator)
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=generator).sign()).clamp(0, 1)
    captions = [pair_caption(7, 1, 0.934, None), pair_caption(3, 8, 0.51, None), "2 / 2 (0.99)"]
    path = save_example_pairs(tmp_path / "pairs.png", x, x_adv, captions, (0.0, 1.0), row_titles=ROWS)

    image = Image.open(path)
    assert image.text["Description"].splitlines() == ["7 / 1 (0.93)", "3 / 8 (0.51)", "2 / 2 (0.99)"]
    assert image.text["Title"] == "clean | adversarial | perturbation"
    assert image.width >= 3 * TILE and image.height >= 3 * TILE
    bands = rows_of_tiles(path, TILE)
    assert len(bands) == 3
    assert all(band.std() > 10 for band in bands)  # each row holds pictures, not a blank strip
    assert not np.array_equal(bands[0], bands[1])  # the adversarial row is not the clean one again


def test_pairs_of_captions_are_joined_and_mismatched_counts_refused(tmp_path) -> None:
    x = torch.rand(2, 3, 4, 4)
    path = save_example_pairs(tmp_path / "c.png", x, x.flip(0), [("clean: 1", "fog: 2")] * 2, (0.0, 1.0))
    assert Image.open(path).text["Description"] == "clean: 1 / fog: 2\nclean: 1 / fog: 2"
    with pytest.raises(ValueError, match="2 examples but 1 captions"):
        save_example_pairs(tmp_path / "d.png", x, x, ["one"], (0.0, 1.0))


def test_captions_use_a_reading_size_font() -> None:
    face = font()
    _, top, _, bottom = face.getbbox("Hg")
    assert FONT_PX >= 12 and bottom - top >= 12  # Pillow's bitmap default is about 7 px tall


def test_the_confidence_is_the_predicted_class_probability() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    predictions = torch.tensor([0, 2])
    expected = torch.softmax(logits, dim=1)[[0, 1], [0, 2]]
    torch.testing.assert_close(predicted_confidence(logits, predictions, are_probabilities=False), expected)
    probabilities = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    confidence = predicted_confidence(probabilities, torch.tensor([1, 0]), are_probabilities=True)
    torch.testing.assert_close(confidence, torch.tensor([0.8, 0.6]))
    assert pair_caption(1, 2, 0.5, ["cat", "dog", "bird"]) == "dog / bird (0.50)"


def test_the_epsilon_curve_marks_clean_accuracy_the_policy_epsilon_and_threshold(tmp_path) -> None:
    path = save_epsilon_curve(
        tmp_path / "sweep" / "eps.png",
        [0.1, 0.0, 0.05, 0.2],
        [0.6, 0.95, 0.8, 0.2],
        policy_epsilon=0.1,
        threshold=0.7,
        title="pgd: robust accuracy against ε",
    )
    image = Image.open(path)
    assert image.format == "PNG" and image.width >= 400
    described = image.text["Description"]
    assert "policy ε = 0.1" in described and "threshold = 0.7" in described
    assert described.index("ε=0: 0.95") < described.index("ε=0.05: 0.8")  # in order of ε, clean first
    assert image.text["Title"] == "pgd: robust accuracy against ε"
    without = save_epsilon_curve(
        tmp_path / "no-threshold.png", [0.0, 0.1], [0.9, 0.5], policy_epsilon=0.1, threshold=None, title="t"
    )
    assert "threshold" not in Image.open(without).text["Description"]
    with pytest.raises(ValueError):
        save_epsilon_curve(
            tmp_path / "x.png", [0.0], [0.9, 0.5], policy_epsilon=0.1, threshold=None, title="t"
        )


def test_the_background_grid_titles_its_columns_and_captions_every_tile(tmp_path) -> None:
    from gate.checks.background import EXAMPLE_COLUMNS, save_example_grid

    images = [[torch.rand(3, 8, 8) for _ in EXAMPLE_COLUMNS] for _ in range(2)]
    captions = [["cat / cat", "cat / dog", "cat / bird"], ["dog / dog", "dog / dog", "dog / cat"]]
    path = save_example_grid(tmp_path / "grid.png", images, captions, (0.0, 1.0))
    image = Image.open(path)
    assert image.text["Title"] == " | ".join(EXAMPLE_COLUMNS)
    assert image.text["Description"].splitlines()[1] == "dog / dog | dog / dog | dog / cat"
    assert len(rows_of_tiles(path, TILE)) == 2 and image.width >= 3 * TILE
