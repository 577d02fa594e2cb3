"""The report's document model and its one renderer.

`keras_fmnist.report` decides what the report says: each section returns a `Section` of
blocks (text, tables, bullet lists, images, figures to draw). This module writes them: it
draws each `Figure`, makes every path relative to the report's directory and lays out the
Markdown (a table's separator row follows from its header; blocks are separated by one blank
line). A section never formats Markdown by hand, so a new section is data, and a change of
layout is made here once.
"""

import dataclasses
import os
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Text:
    """A paragraph (Markdown inline syntax allowed)."""

    text: str


@dataclasses.dataclass(frozen=True)
class Table:
    """A table: `header` names the columns; each row has one cell per column."""

    header: tuple
    rows: tuple

    def __post_init__(self):
        for row in self.rows:
            if len(row) != len(self.header):
                raise ValueError(f"a row of {len(row)} cells under {len(self.header)} "
                                 f"columns ({' | '.join(self.header)}): {row}")


@dataclasses.dataclass(frozen=True)
class Bullets:
    """A bullet list, one item per entry."""

    items: tuple


@dataclasses.dataclass(frozen=True)
class Image:
    """An image that already exists (a run's own figure), shown under `alt`."""

    alt: str
    path: str


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure the renderer draws: `draw(path)` writes the image at `path`, then it is
    shown like an `Image`."""

    alt: str
    path: str
    draw: Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Section:
    """A titled part of the report: `## title`, then its blocks."""

    title: str
    blocks: tuple


def _cells(row):
    return "| " + " | ".join(str(cell) for cell in row) + " |"


def _block_lines(block, root):
    if isinstance(block, Text):
        return [block.text]
    if isinstance(block, Table):
        return ([_cells(block.header), "|" + "---|" * len(block.header)]
                + [_cells(row) for row in block.rows])
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Figure):
        block.draw(block.path)
    if isinstance(block, (Image, Figure)):
        return [f"![{block.alt}]({os.path.relpath(block.path, root)})"]
    raise TypeError(f"not a report block: {block!r}")


def render(title, preamble, sections, root):
    """The report as Markdown: `# title`, the preamble blocks, then each section; figures
    are drawn on the way and every path is written relative to `root`."""
    lines = [f"# {title}", ""]
    for block in preamble:
        lines += _block_lines(block, root) + [""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += _block_lines(block, root) + [""]
    return "\n".join(lines)
