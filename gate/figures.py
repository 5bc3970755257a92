"""How gate draws the pictures of its reports: matplotlib's Agg backend (no display needed) for plots, Pillow
for grids of image tiles, both saved as PNG files whose folders are created and whose captions are also
written into the file as text. One place, so every picture is written the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

FONT_PX = 14
"""Caption size in pixels at 1:1: a reading size (Pillow's built-in bitmap font is about 7 px)."""
GAP = 8


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, imported only when a picture is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, path: str | Path, *, text: Mapping[str, str] | None = None) -> Path:
    """Lay out ``figure``, write it to ``path`` as a PNG (creating the folder), close it, return the path.

    ``text`` goes into the file as PNG text chunks (e.g. ``Title``, ``Description``): what the picture
    says, in words, for tests, search and screen readers.
    """
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png", metadata=dict(text or {}))
    pyplot().close(figure)
    return target


def save_image(image: Image.Image, path: str | Path, *, text: Mapping[str, str] | None = None) -> Path:
    """Write a Pillow ``image`` to ``path`` as a PNG with ``text`` chunks, as :func:`save_png` does."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    image.save(target, format="PNG", pnginfo=info)
    return target


def font(px: int = FONT_PX) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at ``px`` pixels (a scalable font since Pillow 10.1)."""
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError):  # Pillow before 10.1, or without FreeType: the small bitmap font
        return ImageFont.load_default()


def wrap(text: str, width: int, face: Any) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` pixels (a longer word stays whole)."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and measure(candidate, font=face) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def tile_grid(
    tiles: Sequence[Sequence[Image.Image]],
    *,
    captions: Sequence[Sequence[str]] | None = None,
    column_titles: Sequence[str] = (),
    row_titles: Sequence[str] = (),
) -> Image.Image:
    """Tiles ``[row][column]`` on white: titles above the columns and left of the rows, and a caption
    under each tile (``captions[row][column]``, may be empty), all at :data:`FONT_PX` and wrapped to the
    column's width. Every tile of a column is assumed to have the first row's width."""
    face = font()
    line_px = FONT_PX + 4
    widths = [max(tile.width, 96) for tile in tiles[0]]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    left = int(max((measure(title, font=face) for title in row_titles), default=-GAP)) + GAP
    titles = [wrap(title, width, face) for title, width in zip(column_titles, widths, strict=False)]
    top = max((len(lines) for lines in titles), default=0) * line_px + (GAP if titles else 0)
    texts = captions or [[""] * len(row) for row in tiles]
    wrapped = [
        [wrap(text, width, face) if text else [] for text, width in zip(row, widths, strict=True)]
        for row in texts
    ]
    heights = [
        max(tile.height for tile in row) + max(len(lines) for lines in row_lines) * line_px + GAP
        for row, row_lines in zip(tiles, wrapped, strict=True)
    ]
    sheet = Image.new("RGB", (left + sum(widths) + GAP * (len(widths) - 1), top + sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    columns = [left + sum(widths[:i]) + GAP * i for i in range(len(widths))]
    for x, lines in zip(columns, titles, strict=False):
        for number, line in enumerate(lines):
            draw.text((x + 1, number * line_px), line, fill="black", font=face)
    y = top
    for row, (row_tiles, row_lines) in enumerate(zip(tiles, wrapped, strict=True)):
        if row < len(row_titles):
            draw.text(
                (0, y + row_tiles[0].height // 2), row_titles[row], fill="black", font=face, anchor="lm"
            )
        for x, tile, lines in zip(columns, row_tiles, row_lines, strict=True):
            sheet.paste(tile, (x, y))
            for number, line in enumerate(lines):
                draw.text((x + 1, y + tile.height + 2 + number * line_px), line, fill="black", font=face)
        y += heights[row]
    return sheet
