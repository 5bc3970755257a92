"""An image folder as a data source: one sub-folder per class, images decoded only when a batch needs them.

Folders inside a class folder are its subgroups, as BREEDS splits a class into subpopulations: an image
under ``root/<class>/<subgroup>/`` (at any depth below it) belongs to group ``"<class>/<subgroup>"``, one
directly in ``root/<class>/`` to group ``"<class>"``. A folder without any sub-folder of a class has no groups.

Every file is checked before it is read (regular files only, size and pixel caps from the header), and every
decode is complete and strict (``images.py``); ``verify`` decodes the images a run will draw once at load, so
a broken one is refused before any check runs.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gate.data import files, images
from gate.data.images import ImageHeader
from gate.data.sources import Rows
from gate.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_CHANNELS = (1, 3)
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
    feature_names: None = None
    group_of_file: np.ndarray | None = None
    group_names: tuple[str, ...] | None = None

    @property
    def n(self) -> int:
        return len(self.files)

    def read(self, indices: np.ndarray) -> Rows:
        x = np.stack([self._decode(self.files[i]) for i in indices.tolist()])
        group = None if self.group_of_file is None else self.group_of_file[indices]
        return Rows(x=x, y=self.label_of_file[indices], mask=None, group=group)

    def labels(self, indices: np.ndarray) -> np.ndarray:
        return self.label_of_file[indices]

    def groups(self, indices: np.ndarray) -> np.ndarray:
        if self.group_of_file is None:
            raise DataError("the image folder has no sub-folders inside its class folders", path=self.origin)
        return self.group_of_file[indices]

    def verify(self, indices: np.ndarray) -> None:
        """Decode these images once, as batches will (a truncated or corrupt one is refused now)."""
        for i in indices.tolist():
            self._decode(self.files[i])

    def _decode(self, path: Path) -> np.ndarray:
        channels, height, width = self.sample_shape
        with images.decode(path) as image:
            pixels = images.to_unit_pixels(image, channels, (width, height))
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
    image_files, labels, skipped = _list_images(root, classes)
    notes: list[str] = []
    if not image_files:
        raise DataError(f"expected PNG or JPEG images in the class folders {classes}; found none", path=root)
    if skipped:
        notes.append(f"{skipped} files without a .png/.jpg/.jpeg suffix were ignored")
    empty = sorted(set(classes) - {classes[label] for label in labels})
    if empty:
        notes.append(f"class folders without images: {empty}")
    sha256, headers = _digest_and_headers(root, image_files)
    shape = _sample_shape(root, image_files, headers, input_shape, notes)
    notes.extend(_conversion_notes(root, image_files, headers, shape[0]))
    group_of_file, group_names = _subgroups(root, image_files, [classes[label] for label in labels])
    return FolderSource(
        origin=str(root),
        files=image_files,
        label_of_file=np.asarray(labels, dtype=np.int64),
        classes=classes,
        sample_shape=shape,
        input_range=input_range,
        sha256=sha256,
        notes=notes,
        group_of_file=group_of_file,
        group_names=group_names,
    )


def _subgroups(
    root: Path, image_files: list[Path], class_of_file: list[str]
) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """Group ids and names from the first folder below each class folder; (None, None) if there is none.

    Names sort as the class folders do, then by subgroup, so ids follow the folder listing.
    """
    names_of_file = []
    for path, name in zip(image_files, class_of_file, strict=True):
        below = path.relative_to(root / name).parts
        names_of_file.append(f"{name}/{below[0]}" if len(below) > 1 else name)
    if all(name == class_name for name, class_name in zip(names_of_file, class_of_file, strict=True)):
        return None, None
    order = sorted(set(zip(class_of_file, names_of_file, strict=True)))
    names = tuple(name for _, name in order)
    id_of = {name: g for g, name in enumerate(names)}
    return np.asarray([id_of[name] for name in names_of_file], dtype=np.int64), names


def _list_images(root: Path, classes: list[str]) -> tuple[list[Path], list[int], int]:
    """The image files under each class folder, sorted, with their labels; and how many others were skipped.

    Any entry that is neither a folder nor a regular file is refused here, before anything opens it.
    """
    image_files: list[Path] = []
    labels: list[int] = []
    skipped = 0
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.is_dir():
                continue
            files.require_regular(path)  # a device, pipe, socket or dangling link
            if path.suffix.lower() in IMAGE_SUFFIXES:
                image_files.append(path)
                labels.append(label)
            else:
                skipped += 1
    return image_files, labels, skipped


def _digest_and_headers(root: Path, image_files: list[Path]) -> tuple[str, list[ImageHeader]]:
    """sha256 over each file's relative path and bytes (sorted order); also each image's header, checked."""
    digest = hashlib.sha256()
    headers: list[ImageHeader] = []
    for path in image_files:
        relative = path.relative_to(root).as_posix().encode()
        digest.update(len(relative).to_bytes(8, "little") + relative)
        with files.open_regular(path) as stream:
            size = os.fstat(stream.fileno()).st_size
            files.check_size(path, size, limit=files.MAX_IMAGE_FILE_BYTES, limit_name="MAX_IMAGE_FILE_BYTES")
            digest.update(size.to_bytes(8, "little"))
            while chunk := stream.read(_READ_CHUNK):
                digest.update(chunk)
            stream.seek(0)
            headers.append(images.read_header(path, stream))  # reads the header only
    return digest.hexdigest(), headers


def _sample_shape(
    root: Path,
    image_files: list[Path],
    headers: list[ImageHeader],
    input_shape: tuple[int, ...] | None,
    notes: list[str],
) -> tuple[int, int, int]:
    """The model's (C, H, W) when known; otherwise the images' own, which must then all agree."""
    if input_shape is not None:
        if len(input_shape) != 3 or input_shape[0] not in _CHANNELS:
            raise DataError(
                f"an image folder needs an input shape (C, H, W) with C = 1 or 3; found {tuple(input_shape)}",
                path=root,
            )
        channels, height, width = (int(d) for d in input_shape)
        return channels, height, width
    width, height = headers[0].size
    for path, header in zip(image_files, headers, strict=True):
        if header.size != (width, height):
            found_width, found_height = header.size
            raise DataError(
                f"images differ in size ({image_files[0].name} is {width}x{height}, {path.name} is "
                f"{found_width}x{found_height}) and no input shape says which size to resize to",
                path=root,
                hint="pass input_shape=(C, H, W) (the model's input shape) to resize every image",
            )
    channels = 1 if all(header.mode in images.GREY_MODES for header in headers) else 3
    notes.append(f"no input shape given: using the images' own shape ({channels}, {height}, {width})")
    return channels, height, width


def _conversion_notes(
    root: Path, image_files: list[Path], headers: list[ImageHeader], channels: int
) -> list[str]:
    """One note per kind of image that is not stored as the model takes it, with a count and an example."""
    target = "L" if channels == 1 else "RGB"
    counts: Counter[tuple[str, bool]] = Counter()
    first: dict[tuple[str, bool], Path] = {}
    for path, header in zip(image_files, headers, strict=True):
        key = (header.mode, header.transparency)
        counts[key] += 1
        first.setdefault(key, path)
    notes = []
    for key, count in counts.items():
        how = images.conversion(ImageHeader((0, 0), *key), channels)
        if how is not None:
            mode = key[0] + (" with transparency" if key[1] else "")
            example = first[key].relative_to(root).as_posix()
            notes.append(f"{count} image(s) in mode {mode} converted to {target}: {how} (first: {example})")
    return notes
