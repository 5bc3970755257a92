"""Byte counts as a reader takes them in at a glance (``1536`` -> ``"1.5 KiB"``); a module of its own so
that the data, model and policy loaders share it without importing one another's stacks."""

from __future__ import annotations


def human_size(count: int) -> str:
    """``1536`` -> ``"1.5 KiB"``; bytes below 1 KiB are given exactly."""
    if count < 1024:
        return f"{count} bytes"
    value, unit = count / 1024, "KiB"
    for larger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.1f} {unit}"
