"""How gate draws the pictures of its reports: matplotlib's Agg backend (no display needed), saved as PNG
files whose folders are created. One place, so every picture is written the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, imported only when a picture is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, path: str | Path) -> Path:
    """Lay out ``figure``, write it to ``path`` as a PNG (creating the folder), close it, return the path."""
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    pyplot().close(figure)
    return target
