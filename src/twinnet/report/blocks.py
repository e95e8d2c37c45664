"""The typed blocks a report is built from, and their Markdown renderer.

A report is a list of blocks: ``Text`` (Markdown as is), ``Table``, ``Figure`` (a PNG of the run
directory with its caption) and ``Section`` (a titled list of blocks, nested sections being
subsections). Blocks say what a report holds, renderers how it looks: ``render_markdown`` writes
Markdown; another format is another function over the same blocks (``walk`` visits them all).
Every Markdown table, in reports and elsewhere, comes from ``markdown_table``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath


@dataclass(frozen=True)
class Text:
    """Markdown, rendered as it is."""

    markdown: str

    def __post_init__(self) -> None:
        if not isinstance(self.markdown, str):
            raise TypeError(f"Text holds Markdown text, got {type(self.markdown).__name__}")


@dataclass(frozen=True)
class Table:
    """A table; ``numeric`` holds the indices of the columns to align right (numbers)."""

    headers: list[str]
    rows: list[list]
    numeric: frozenset[int] = field(default_factory=frozenset)
    caption: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", [str(h) for h in self.headers])
        object.__setattr__(self, "rows", [list(row) for row in self.rows])
        object.__setattr__(self, "numeric", frozenset(self.numeric))
        n = len(self.headers)
        for k, row in enumerate(self.rows):
            if len(row) != n:
                raise ValueError(f"table row {k} has {len(row)} cells, the table {n} columns ({self.headers})")
        outside = sorted(i for i in self.numeric if not 0 <= i < n)
        if outside:
            raise ValueError(f"numeric columns {outside} are not among the table's {n} columns")


@dataclass(frozen=True)
class Figure:
    """A PNG of the run directory (``file``, a name relative to it) with its caption, which every figure has."""

    file: str
    caption: str

    def __post_init__(self) -> None:
        if not isinstance(self.caption, str) or not self.caption.strip():
            raise ValueError(f"figure {self.file!r} has no caption: every figure needs one")
        if not isinstance(self.file, str) or not self.file.lower().endswith(".png"):
            raise ValueError(f"figure {self.file!r}: expected the name of a PNG file")
        if PurePosixPath(self.file).is_absolute() or PureWindowsPath(self.file).is_absolute() or ".." in (
                PurePosixPath(self.file).parts):
            raise ValueError(f"figure {self.file!r}: expected a name relative to the run directory, inside it")


@dataclass(frozen=True)
class Section:
    """A titled list of blocks; a Section among them is a subsection (its heading one level deeper)."""

    title: str
    blocks: list

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip() or "\n" in self.title:
            raise ValueError(f"a section's title is one non-empty line, got {self.title!r}")


Block = Text | Table | Figure | Section
MAX_LEVEL = 6  # Markdown has six heading levels


def walk(blocks: Iterable[Block]) -> Iterator[Block]:
    """Every block, sections' contents included, in reading order (a section before its contents)."""
    for block in blocks:
        yield block
        if isinstance(block, Section):
            yield from walk(block.blocks)


def _cell(value) -> str:
    """A table cell's text: a ``|`` would end the cell and a line break the row, so neither stays as is."""
    return str(value).replace("|", "\\|").replace("\r\n", " ").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence], align_right: Iterable[int] | None = None) -> str:
    """A Markdown table; ``align_right`` holds the indices of numeric columns."""
    right = set(align_right or ())
    sep = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(block: Block, level: int) -> str:
    if isinstance(block, Text):
        return block.markdown
    if isinstance(block, Table):
        table = markdown_table(block.headers, block.rows, block.numeric)
        return table + (f"\n\n*Table: {' '.join(block.caption.split())}*" if block.caption.strip() else "")
    if isinstance(block, Figure):
        return f"![{block.file}]({block.file})\n\n*Figure: {' '.join(block.caption.split())}*"
    if isinstance(block, Section):
        if level > MAX_LEVEL:
            raise ValueError(f"section {block.title!r} is nested too deep: Markdown has {MAX_LEVEL} heading levels")
        return "\n\n".join(["#" * level + " " + block.title, _render(block.blocks, level + 1)]).rstrip()
    raise TypeError(f"not a report block: {block!r} ({type(block).__name__}); expected Text, Table, Figure or Section")


def render_markdown(blocks: Iterable[Block], level: int = 2) -> str:
    """The blocks as Markdown, one paragraph apart; a top-level Section is a heading of ``level``
    (``##`` by default), each nested Section one level deeper. Blocks that render empty are left out."""
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"heading level {level}: Markdown has levels 1 to {MAX_LEVEL}")
    return _render(blocks, level)


def _render(blocks: Iterable[Block], level: int) -> str:
    return "\n\n".join(part for part in (_markdown(b, level) for b in blocks) if part)


_RELATIVE_LINK = re.compile(r"\]\((?![A-Za-z][A-Za-z0-9+.-]*:|/|#)([^)\s]+)\)")


def relocated(blocks: Iterable[Block], folder: str) -> list[Block]:
    """The blocks of a run kept in ``folder`` (a sub-directory of another run) as that run's report shows
    them: every figure's file, and every relative Markdown link, prefixed by the folder."""
    def move(text):
        return _RELATIVE_LINK.sub(lambda m: f"]({folder}/{m.group(1)})", text) if isinstance(text, str) else text

    out: list[Block] = []
    for block in blocks:
        if isinstance(block, Figure):
            block = Figure(f"{folder}/{block.file}", block.caption)
        elif isinstance(block, Section):
            block = Section(block.title, relocated(block.blocks, folder))
        elif isinstance(block, Text):
            block = Text(move(block.markdown))
        elif isinstance(block, Table):
            block = Table(block.headers, [[move(c) for c in row] for row in block.rows], block.numeric, block.caption)
        out.append(block)
    return out
