"""Guards for every file gate reads as part of a model: existence, size limit, and what kind of archive it is."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path

from gate.errors import ModelError
from gate.sizes import human_size

# Upper bound on any single model, weights or external-data file; raise it here for very large models.
MAX_FILE_BYTES = 4 * 1024**3


def checked_file(path: Path, what: str, *, max_bytes: int | None = None) -> Path:
    """Return ``path`` if it is a readable regular file within the size limit, else a ``ModelError``."""
    limit = MAX_FILE_BYTES if max_bytes is None else max_bytes
    if not path.exists():
        raise ModelError(f"{what} not found: expected a file at this path", path=path)
    if not path.is_file():
        raise ModelError(f"{what} must be a regular file, found a directory or special file", path=path)
    size = path.stat().st_size
    if size > limit:
        raise ModelError(
            f"{what} is {human_size(size)}, larger than the limit of {human_size(limit)}",
            path=path,
            hint="raise gate.model.files.MAX_FILE_BYTES if this size is expected",
        )
    return path


def sha256_of_files(paths: Iterable[Path]) -> str:
    """The SHA-256 of a model artifact.

    One file: the plain digest of its bytes, so ``sha256sum`` and attestation tools agree with the report.
    Several (an ONNX file with external data): one digest over the files in order, each prefixed by its
    name, so renaming or swapping a data file changes it.
    """
    files = list(paths)
    digest = hashlib.sha256()
    for path in files:
        if len(files) > 1:
            digest.update(path.name.encode() + b"\0")
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def zip_names(path: Path) -> list[str] | None:
    """The member names of a zip archive, or ``None`` if the file is not a zip (e.g. a legacy pickle)."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except zipfile.BadZipFile as error:
        raise ModelError(
            f"the file looks like a zip archive but cannot be read: {error}", path=path
        ) from error


def _starts_like_a_pickle(path: Path) -> bool:
    # Pickle protocols 2+ (and torch's legacy format) open with the PROTO opcode 0x80.
    with path.open("rb") as stream:
        return stream.read(1) == b"\x80"


def archive_kind(path: Path) -> str:
    """Classify a model file by content: ``torch.export``, ``torchscript``, ``pickle`` or ``onnx``."""
    names = zip_names(path)
    if names is None:
        # Not a zip: a pickle if it opens like one, otherwise it is parsed (and vetted) as ONNX protobuf.
        return (
            "pickle" if _starts_like_a_pickle(path) or path.suffix.lower() in (".pkl", ".pickle") else "onnx"
        )
    if any(name.split("/")[-1] == "archive_format" for name in names):
        return "torch.export"
    if any("/code/" in name for name in names) and any(name.endswith("/constants.pkl") for name in names):
        return "torchscript"
    if any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
        return "pickle"
    raise ModelError(
        "expected a TorchScript archive, a torch.export program (.pt2) or a torch.save file; "
        "found a zip archive with none of their markers",
        path=path,
    )
