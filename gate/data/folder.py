"""An image folder as a data source: one sub-folder per class, images decoded only when a batch needs them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from gate.data.sources import Rows
from gate.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_MODES = {1: "L", 3: "RGB"}
_READ_CHUNK = 1 << 20


@dataclass
class FolderSource:
    """Images under ``root/<class>/``; labels are the positions of the class names in sorted order."""

    origin: str
    files: list[Path]
    label_of_file: np.ndarray
    classes: list[str]
    sample_shape: tuple[int, int, int]
    input_range: tuple[float, float]
    sha256: str
    notes: list[str] = field(default_factory=list)
    has_mask: bool = False
    scan_pixels: bool = False  # 8-bit pixels scaled into input_range cannot be out of range or NaN

    @property
    def n(self) -> int:
        return len(self.files)

    def read(self, indices: np.ndarray) -> Rows:
        x = np.stack([self._decode(self.files[i]) for i in indices.tolist()])
        return Rows(x=x, y=self.label_of_file[indices], mask=None)

    def labels(self, indices: np.ndarray) -> np.ndarray:
        return self.label_of_file[indices]

    def _decode(self, path: Path) -> np.ndarray:
        channels, height, width = self.sample_shape
        try:
            with Image.open(path) as image:
                converted = image.convert(_MODES[channels])
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"expected a PNG or JPEG image, could not decode it ({exc})", path=path) from exc
        if converted.size != (width, height):
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(converted, dtype=np.float32) / 255.0
        pixels = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
        low, high = self.input_range
        return np.ascontiguousarray(low + (high - low) * pixels, dtype=np.float32)


def open_folder(
    root: Path, *, input_shape: tuple[int, ...] | None, input_range: tuple[float, float]
) -> FolderSource:
    """List, digest and header-check the images of ``root`` (no pixels are decoded here)."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            "expected an image folder with one sub-folder per class; found no sub-folders", path=root
        )
    files: list[Path] = []
    labels: list[int] = []
    notes: list[str] = []
    skipped = 0
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
                labels.append(label)
            elif path.is_file():
                skipped += 1
    if not files:
        raise DataError(f"expected PNG or JPEG images in the class folders {classes}; found none", path=root)
    if skipped:
        notes.append(f"{skipped} files without a .png/.jpg/.jpeg suffix were ignored")
    empty = sorted(set(classes) - {classes[label] for label in labels})
    if empty:
        notes.append(f"class folders without images: {empty}")
    sha256, sizes, modes = _digest_and_headers(root, files)
    shape = _sample_shape(root, files, sizes, modes, input_shape, notes)
    return FolderSource(
        origin=str(root),
        files=files,
        label_of_file=np.asarray(labels, dtype=np.int64),
        classes=classes,
        sample_shape=shape,
        input_range=input_range,
        sha256=sha256,
        notes=notes,
    )


def _digest_and_headers(root: Path, files: list[Path]) -> tuple[str, list[tuple[int, int]], list[str]]:
    """sha256 over each file's relative path and bytes (sorted order); also each image's size and mode."""
    digest = hashlib.sha256()
    sizes: list[tuple[int, int]] = []
    modes: list[str] = []
    for path in files:
        relative = path.relative_to(root).as_posix().encode()
        digest.update(len(relative).to_bytes(8, "little") + relative)
        digest.update(path.stat().st_size.to_bytes(8, "little"))
        with open(path, "rb") as f:
            while chunk := f.read(_READ_CHUNK):
                digest.update(chunk)
        try:
            with Image.open(path) as image:  # reads the header only
                sizes.append(image.size)
                modes.append(image.mode)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(
                f"expected a PNG or JPEG image, found an unreadable file ({exc})", path=path
            ) from exc
    return digest.hexdigest(), sizes, modes


def _sample_shape(
    root: Path,
    files: list[Path],
    sizes: list[tuple[int, int]],
    modes: list[str],
    input_shape: tuple[int, ...] | None,
    notes: list[str],
) -> tuple[int, int, int]:
    """The model's (C, H, W) when known; otherwise the images' own, which must then all agree."""
    if input_shape is not None:
        if len(input_shape) != 3 or input_shape[0] not in _MODES:
            raise DataError(
                f"an image folder needs an input shape (C, H, W) with C = 1 or 3; found {tuple(input_shape)}",
                path=root,
            )
        channels, height, width = (int(d) for d in input_shape)
        return channels, height, width
    width, height = sizes[0]
    for path, size in zip(files, sizes, strict=True):
        if size != (width, height):
            raise DataError(
                f"images differ in size ({files[0].name} is {width}x{height}, {path.name} is {size[0]}x{size[1]})"
                " and no input shape says which size to resize to",
                path=root,
                hint="pass input_shape=(C, H, W) (the model's input shape) to resize every image",
            )
    channels = 1 if all(mode in ("1", "L", "I", "F", "I;16") for mode in modes) else 3
    notes.append(f"no input shape given: using the images' own shape ({channels}, {height}, {width})")
    return channels, height, width
