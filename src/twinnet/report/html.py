"""The same report blocks as one self-contained HTML page: figures embedded, no network needed.

``Text`` blocks hold the small Markdown the reports use (paragraphs, ``- `` lists, ``code``,
**bold**, *italics*, [links](target), and a line break as two trailing spaces); it is converted
here, escaping everything else, so a value from a run (a path with ``<``) cannot become markup.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable
from pathlib import Path

from twinnet.report.blocks import MAX_LEVEL, Block, Figure, Section, Table, Text

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45;
       color: #1b1b1b; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.55rem; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .caption { font-size: 0.9rem; color: #444; margin-top: 0.3rem; }
code { background: #f5f5f5; padding: 0 0.2rem; border-radius: 3px; font-size: 0.9em; }
"""

_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\*(.+?)\*|\[([^\]]+)\]\(([^)\s]+)\)")


def inline(text: str) -> str:
    """One line of the reports' Markdown as HTML: code, bold, italics and links; the rest escaped."""
    out, last = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[last:m.start()]))
        code, bold, italic, label, target = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline(bold)}</strong>")
        elif italic is not None:
            out.append(f"<em>{inline(italic)}</em>")
        else:
            safe = target if not re.match(r"^\s*javascript:", target, re.I) else "#"
            if re.fullmatch(r"(?:[^:#?]*/)?report\.md", safe):  # another run's report: its HTML, written beside it
                safe = safe[: -len(".md")] + ".html"
            out.append(f'<a href="{html.escape(safe, quote=True)}">{inline(label)}</a>')
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def paragraphs(markdown: str) -> str:
    """Paragraphs (blank-line separated) and ``- `` lists of the reports' Markdown as HTML."""
    parts = []
    for block in re.split(r"\n\s*\n", markdown.strip()):
        lines = block.split("\n")
        if all(line.lstrip().startswith("- ") for line in lines if line.strip()):
            items = "".join(f"<li>{inline(line.lstrip()[2:])}</li>" for line in lines if line.strip())
            parts.append(f"<ul>{items}</ul>")
        else:
            parts.append("<p>" + "<br>\n".join(inline(line.rstrip()) for line in lines) + "</p>")
    return "\n".join(parts)


def _html(block: Block, level: int, base: Path) -> str:
    if isinstance(block, Text):
        return paragraphs(block.markdown)
    if isinstance(block, Table):
        head = "".join(f"<th>{inline(h)}</th>" for h in block.headers)
        rows = "".join("<tr>" + "".join(f'<td{" class=num" if i in block.numeric else ""}>{inline(str(c))}</td>'
                                        for i, c in enumerate(row)) + "</tr>" for row in block.rows)
        caption = f'<p class="caption">Table: {inline(block.caption)}</p>' if block.caption.strip() else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{caption}"
    if isinstance(block, Figure):
        data = base64.b64encode((base / block.file).read_bytes()).decode()
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.file, quote=True)}">'
                f"<figcaption>Figure: {inline(block.caption)}</figcaption></figure>")
    if isinstance(block, Section):
        if level > MAX_LEVEL:
            raise ValueError(f"section {block.title!r} is nested too deep: HTML has {MAX_LEVEL} heading levels")
        inner = render(block.blocks, base, level + 1)
        return f"<section><h{level}>{inline(block.title)}</h{level}>\n{inner}</section>"
    raise TypeError(f"not a report block: {block!r} ({type(block).__name__}); expected Text, Table, Figure or Section")


def render(blocks: Iterable[Block], base: Path, level: int = 1) -> str:
    """The blocks as HTML fragments, figures read from ``base`` (the run directory) and embedded."""
    return "\n".join(_html(b, level, Path(base)) for b in blocks)


def page(blocks: list[Block], base: Path, title: str) -> str:
    """A whole, self-contained HTML page of the blocks."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{render(blocks, base)}\n</body></html>\n")
