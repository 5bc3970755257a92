"""Common corruptions: within bounds, seeded, stronger with each level, and faithful to the reference ops."""

from __future__ import annotations

import colorsys
import io
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gate.corruptions import CORRUPTIONS, LEVELS, CorruptionSpecError, corrupt, corrupt_batch
from gate.errors import DataError, GateError

REQUIRED = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "gaussian_blur",
    "brightness",
    "contrast",
    "jpeg",
    "pixelate",
}
NOISES = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]
ALL = sorted(CORRUPTIONS)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def images(digits: tuple[np.ndarray, np.ndarray]) -> dict[str, torch.Tensor]:
    """Small natural-looking test images at the three sizes the tables are chosen for."""
    x = torch.from_numpy(digits[0][:24])
    smooth = torch.rand(2, 3, 16, 16, generator=_generator(1))
    return {
        "digits 8px": x,  # CIFAR-10-C table
        "digits 32px": F.interpolate(x, size=(32, 32), mode="bilinear"),  # CIFAR-10-C table
        "rgb 128px": F.interpolate(smooth, size=(128, 128), mode="bilinear"),  # ImageNet-C table
    }


def _mean_change(x: torch.Tensor, name: str) -> list[float]:
    return [float((corrupt(x, name, level, generator=_generator()) - x).abs().mean()) for level in LEVELS]


def test_registry_holds_the_required_corruptions_with_five_levels() -> None:
    assert set(CORRUPTIONS) >= REQUIRED | {"defocus_blur", "speckle_noise"}
    for name, corruption in CORRUPTIONS.items():
        assert corruption.name == name and len(corruption.imagenet) == len(corruption.cifar) == 5


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", ["digits 32px", "rgb 128px"])
def test_change_grows_with_every_level(images: dict[str, torch.Tensor], name: str, size: str) -> None:
    changes = _mean_change(images[size], name)
    assert all(a < b for a, b in itertools.pairwise(changes)), changes
    assert changes[0] > 0


@pytest.mark.parametrize("name", sorted(set(ALL) - {"pixelate"}))
def test_change_grows_with_every_level_on_8px_digits(images: dict[str, torch.Tensor], name: str) -> None:
    changes = _mean_change(images["digits 8px"], name)
    assert all(a < b for a, b in itertools.pairwise(changes)), changes


def test_pixelate_resolution_shrinks_with_level_on_8px_digits(images: dict[str, torch.Tensor]) -> None:
    """At 8 px neighbouring levels can round to the same size (7, 7, 6, 6, 5) but never grow."""
    x = images["digits 8px"]
    sizes = [int(8 * CORRUPTIONS["pixelate"].parameter(level, x)) for level in LEVELS]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("level", [1, 5])
def test_output_keeps_shape_dtype_and_bounds(images: dict[str, torch.Tensor], name: str, level: int) -> None:
    for x in images.values():
        for dtype in (torch.float32, torch.float64):
            out = corrupt(x.to(dtype), name, level, generator=_generator())
            assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("name", ALL)
def test_other_bounds_are_mapped_to_the_unit_range(images: dict[str, torch.Tensor], name: str) -> None:
    x = images["digits 32px"]
    unit = corrupt(x, name, 3, generator=_generator(4))
    scaled = corrupt(x * 2 - 1, name, 3, generator=_generator(4), bounds=(-1.0, 1.0))
    assert float(scaled.min()) >= -1 and float(scaled.max()) <= 1
    torch.testing.assert_close(scaled, unit * 2 - 1, atol=2e-6, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_same_generator_same_result(images: dict[str, torch.Tensor], name: str) -> None:
    x = images["digits 32px"]
    first = corrupt(x, name, 2, generator=_generator(7))
    assert torch.equal(first, corrupt(x, name, 2, generator=_generator(7)))
    if CORRUPTIONS[name].random:
        assert not torch.equal(first, corrupt(x, name, 2, generator=_generator(8)))
    assert torch.equal(x, images["digits 32px"])  # the input is untouched


@pytest.mark.parametrize("name", ALL)
def test_corrupt_batch_does_not_depend_on_batch_composition(
    images: dict[str, torch.Tensor], name: str
) -> None:
    x = images["digits 8px"]
    index = torch.arange(100, 100 + len(x))
    whole = corrupt_batch(x, name, 4, seed=3, index=index)
    order = torch.randperm(len(x), generator=_generator(0))[:7]
    part = corrupt_batch(x[order], name, 4, seed=3, index=index[order])
    assert torch.equal(part, whole[order])
    other_seed = corrupt_batch(x, name, 4, seed=4, index=index)
    assert torch.equal(other_seed, whole) != CORRUPTIONS[name].random


def test_corrupt_batch_checks_the_index(images: dict[str, torch.Tensor]) -> None:
    with pytest.raises(DataError, match="one data set position per sample"):
        corrupt_batch(images["digits 8px"], "jpeg", 1, seed=0, index=torch.arange(3))


@pytest.mark.parametrize("level", [0, 6, 2.0, True, "3"])
def test_level_must_be_an_integer_from_one_to_five(images: dict[str, torch.Tensor], level: object) -> None:
    with pytest.raises(CorruptionSpecError, match="level must be an integer from 1 to 5") as info:
        corrupt(images["digits 8px"], "contrast", level, generator=_generator())  # type: ignore[arg-type]
    assert isinstance(info.value, GateError) and isinstance(info.value, ValueError)


def test_unknown_name(images: dict[str, torch.Tensor]) -> None:
    with pytest.raises(CorruptionSpecError, match="unknown corruption 'fog'; expected one of"):
        corrupt(images["digits 8px"], "fog", 1, generator=_generator())


@pytest.mark.parametrize("name", NOISES)
def test_noises_apply_to_features(name: str) -> None:
    x = torch.rand(50, 6, generator=_generator(2))
    out = corrupt(x, name, 5, generator=_generator())
    assert out.shape == x.shape and not torch.equal(out, x) and 0 <= float(out.min()) <= float(out.max()) <= 1


@pytest.mark.parametrize("name", sorted(set(ALL) - set(NOISES)))
def test_image_corruptions_refuse_features(name: str) -> None:
    with pytest.raises(DataError, match=f"{name}' needs images .N, C, H, W.; the data are features"):
        corrupt(torch.rand(5, 6), name, 1, generator=_generator())


@pytest.mark.parametrize("shape", [(4, 8, 8), (2, 1, 1, 8, 8)])
def test_other_shapes_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(DataError, match=r"images .N, C, H, W. or features .N, F.; found shape"):
        corrupt(torch.rand(shape), "gaussian_noise", 1, generator=_generator())


@pytest.mark.parametrize("name", ["jpeg", "brightness"])
def test_colour_corruptions_need_one_or_three_channels(name: str) -> None:
    with pytest.raises(DataError, match=r"1 .grey. or 3 .RGB. channels; found 2"):
        corrupt(torch.rand(2, 2, 8, 8), name, 1, generator=_generator())


def test_jpeg_is_a_pillow_round_trip(images: dict[str, torch.Tensor]) -> None:
    x = images["rgb 128px"][:1]
    quality = CORRUPTIONS["jpeg"].parameter(1, x)
    pixels = (x[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float32) / 255
    out = corrupt(x, "jpeg", 1, generator=_generator())[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("level", LEVELS)
def test_pixelate_matches_pillow_box_resampling(level: int) -> None:
    pixels = np.random.default_rng(level).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].double() / 255
    side = int(32 * CORRUPTIONS["pixelate"].parameter(level, x))
    expected = (
        Image.fromarray(pixels)
        .resize((side, side), Image.Resampling.BOX)
        .resize((32, 32), Image.Resampling.BOX)
    )
    out = corrupt(x, "pixelate", level, generator=_generator())[0].permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(
        out, np.asarray(expected, dtype=np.float64), atol=1.0
    )  # Pillow rounds to uint8 between


def test_brightness_raises_hsv_value_keeping_hue_and_saturation() -> None:
    x = torch.rand(1, 3, 4, 4, generator=_generator(5), dtype=torch.float64) * 0.8
    shift = CORRUPTIONS["brightness"].parameter(2, x)
    out = corrupt(x, "brightness", 2, generator=_generator())
    for r, c in [(0, 0), (1, 2), (3, 3)]:
        h, s, v = colorsys.rgb_to_hsv(*x[0, :, r, c].tolist())
        expected = colorsys.hsv_to_rgb(h, s, min(v + shift, 1.0))
        np.testing.assert_allclose(out[0, :, r, c].numpy(), expected, atol=1e-12)
    grey = torch.full((1, 1, 4, 4), 0.95)
    torch.testing.assert_close(corrupt(grey, "brightness", 2, generator=_generator()), torch.ones_like(grey))


def test_contrast_keeps_each_image_mean(images: dict[str, torch.Tensor]) -> None:
    x = images["digits 32px"]
    out = corrupt(x, "contrast", 5, generator=_generator())
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-6, rtol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ALL)
def test_cuda_tensors_stay_on_the_device_and_match_cpu(images: dict[str, torch.Tensor], name: str) -> None:
    x = images["digits 32px"]
    index = torch.arange(len(x))
    cpu = corrupt_batch(x, name, 3, seed=1, index=index)
    cuda = corrupt_batch(x.cuda(), name, 3, seed=1, index=index.cuda())
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-5, rtol=0)


@pytest.mark.parametrize("level", LEVELS)
def test_blurs_match_the_reference_filters(level: int) -> None:
    """gaussian_blur is skimage's (scipy, truncate 4, 'nearest'); defocus_blur is ImageNet-C's disk + filter2D."""
    ndimage = pytest.importorskip("scipy.ndimage")
    image = np.random.default_rng(level).random((32, 32))
    x = torch.from_numpy(image)[None, None]
    sigma = CORRUPTIONS["gaussian_blur"].parameter(level, x)
    expected = ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=4.0)
    np.testing.assert_allclose(
        corrupt(x, "gaussian_blur", level, generator=_generator())[0, 0], expected, atol=1e-12
    )

    radius, alias_blur = CORRUPTIONS["defocus_blur"].parameter(level, x)
    grid = np.arange(-8, 9)  # radius <= 8 in the CIFAR table
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).astype(np.float64)
    smooth = np.exp(-(np.arange(-1, 2) ** 2) / (2 * alias_blur**2))
    smooth /= smooth.sum()  # cv2.GaussianBlur(disk, (3, 3), alias_blur) with its reflect-101 border
    kernel = ndimage.correlate(disk / disk.sum(), np.outer(smooth, smooth), mode="mirror")
    expected = ndimage.correlate(image, kernel, mode="mirror")  # cv2.filter2D's default border
    np.testing.assert_allclose(
        corrupt(x, "defocus_blur", level, generator=_generator())[0, 0], expected, atol=1e-12
    )
