"""What a data file holds, from its bytes and never its name: a zip (``.npz``), a Parquet file, UTF-8 text
(CSV) or something else."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from gate.data import files

PARQUET_MAGIC = b"PAR1"  # a Parquet file starts and ends with it
TEXT_SAMPLE_BYTES = 64 << 10  # how much of a file decides whether it is text


class Kind(Enum):
    ZIP = "zip"
    PARQUET = "parquet"
    TEXT = "text"
    BINARY = "binary"


@dataclass(frozen=True)
class Content:
    """The kind of a file and, for binary content, why it is not text (for a message)."""

    kind: Kind
    why_not_text: str = ""


def sniff(path: Path) -> Content:
    """Decide from the bytes: a zip archive, Parquet's magic at both ends, UTF-8 text, or none of these.

    Text is judged on the first ``TEXT_SAMPLE_BYTES``: no NUL byte and valid UTF-8 (a character cut by the
    end of the sample is allowed); the CSV parser refuses a later byte that is not UTF-8, with its line.
    """
    with files.open_regular(path) as stream:
        if zipfile.is_zipfile(stream):
            return Content(Kind.ZIP)
        size = os.fstat(stream.fileno()).st_size
        stream.seek(0)
        head = stream.read(TEXT_SAMPLE_BYTES)
        if size >= 2 * len(PARQUET_MAGIC) and head.startswith(PARQUET_MAGIC):
            stream.seek(size - len(PARQUET_MAGIC))
            if stream.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC:
                return Content(Kind.PARQUET)
    why = _why_not_text(head, complete=len(head) >= size)
    if why is None:
        return Content(Kind.TEXT)
    if head.startswith(PARQUET_MAGIC):
        why += "; it starts with Parquet's magic bytes PAR1 but does not end with them (truncated?)"
    return Content(Kind.BINARY, why)


def _why_not_text(head: bytes, *, complete: bool) -> str | None:
    if b"\x00" in head:
        return f"a NUL byte at offset {head.index(0)} (binary data, or text in UTF-16)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not complete and exc.reason == "unexpected end of data":
            return None  # the sample ends inside a multi-byte character
        return f"byte 0x{head[exc.start]:02x} at offset {exc.start} is not UTF-8"
    return None
