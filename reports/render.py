"""Render a report `Document` as Markdown (figures linked) or one self-contained HTML page.

The HTML embeds every figure as a base64 PNG data URI and carries its CSS inline: no
external URL, no script, so the file opens offline and can be mailed as it is. Order: title,
warnings, the question, the sections (the first, `lead`, sets its text beside its figure on a
wide screen), and the run details last, folded away (<details>).
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from typing import Mapping

import pandas as pd

FIGURES_DIR = "figures"


@dataclass(frozen=True)
class FigureRef:
    """A figure by file stem (figures/<name>.png) with the caption shown under it."""

    name: str
    caption: str


@dataclass(frozen=True)
class Section:
    """One report section: paragraphs, then an optional table of strings, then figures."""

    title: str
    paragraphs: tuple[str, ...] = ()
    table: pd.DataFrame | None = field(default=None, compare=False)
    figures: tuple[FigureRef, ...] = ()
    bullets: tuple[str, ...] = ()
    lead: bool = False  # the first screen's answer: text beside its figure where the page is wide


@dataclass(frozen=True)
class Document:
    """A whole report: a title, the question it answers (`description`), sections, and the run's
    facts as (label, value) pairs (`header`, shown last); `warnings` go above everything."""

    title: str
    description: str
    header: tuple[tuple[str, str], ...]
    sections: tuple[Section, ...]
    warnings: tuple[str, ...] = ()


RUN_DETAILS = "Run details"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin: 0 0 0.3rem; font-size: 1.7rem; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin: 1.6rem 0 0.6rem; font-size: 1.3rem; }
p.question { font-size: 1.08rem; margin: 0.2rem 0 0.4rem; }
div.warning { border: 2px solid #c62828; background: #fdecea; padding: 0.5rem 0.8rem; margin: 0.6rem 0; }
section.lead h2 { margin-top: 0.8rem; }
div.lead { display: flex; flex-wrap: wrap; gap: 0 1.5rem; align-items: flex-start; }
div.lead > div.text { flex: 1 1 360px; min-width: 0; }
div.lead > div.text ul { margin: 0; padding-left: 1.2rem; } div.lead li { margin-bottom: 0.25rem; }
div.lead > figure { flex: 0 1 auto; margin: 0; }
div.table-wrap { overflow-x: auto; max-width: 100%; margin: 0.8rem 0; }
table { border-collapse: collapse; margin: 0; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; text-align: right; }
th { background: #f3f3f3; vertical-align: bottom; } td:first-child, th:first-child { text-align: left; }
td { white-space: nowrap; } td.long { white-space: normal; min-width: 16em; }
table.header td { text-align: left; overflow-wrap: anywhere; white-space: normal; }
table.header td:first-child { font-weight: 600; background: #fafafa; white-space: nowrap; }
details.run > summary { cursor: pointer; font-size: 1.3rem; font-weight: 600; margin-top: 1.6rem; }
figure { display: inline-block; margin: 0.5rem 1rem 0.5rem 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; max-width: 640px; }
"""


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a frame of strings."""
    head = "| " + " | ".join(_md_cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def render_markdown(doc: Document) -> str:
    """Markdown with figures linked as figures/<name>.png (relative to the report); the run
    details come last, as a section of their own."""
    lines = [f"# {doc.title}", ""]
    lines += [line for w in doc.warnings for line in (f"> **Warning:** {w}", "")]
    if doc.description:
        lines += [f"**Question:** {doc.description}", ""]
    for section in doc.sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        if section.bullets:
            lines += [f"- {b}" for b in section.bullets] + [""]
        if section.table is not None and len(section.table.columns):
            lines += [markdown_table(section.table), ""]
        for fig in section.figures:
            lines += [f"![{fig.caption}]({FIGURES_DIR}/{fig.name}.png)", "", f"*{fig.caption}*", ""]
    if doc.header:
        lines += [f"## {RUN_DETAILS}", "", markdown_table(pd.DataFrame(list(doc.header), columns=["", " "])), ""]
    return "\n".join(lines).rstrip() + "\n"


def _breakable(text: str) -> str:
    """Escaped text with line-break chances after '.' and '_' (dotted keys in narrow headers)."""
    return re.sub(r"([._])", r"\1<wbr>", html.escape(text))


LONG_CELL = 40  # characters; a longer cell (a failure's reason) may wrap, shorter ones never do


def _td(text: str) -> str:
    cls = ' class="long"' if len(text) > LONG_CELL else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def section_id(title: str) -> str:
    """The HTML id of a section: its title in lower case, runs of other characters as '-'."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def html_table(table: pd.DataFrame, css_class: str = "") -> str:
    """An HTML table of a frame of strings, every cell escaped, in a horizontally scrolling box;
    headers may break after '.' and '_' so that dotted field names do not widen a column."""
    cls = f' class="{css_class}"' if css_class else ""
    head = "".join(f"<th>{_breakable(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(_td(str(v)) for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    table_html = f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="table-wrap">{table_html}</div>'  # wide tables scroll, the page does not


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_html(fig: FigureRef, images: Mapping[str, bytes]) -> str:
    if fig.name not in images:
        raise KeyError(f"figure {fig.name!r} has no image; images hold {sorted(images)}")
    esc = html.escape
    return (f'<figure><img src="{_data_uri(images[fig.name])}" alt="{esc(fig.caption)}">'
            f"<figcaption>{esc(fig.caption)}</figcaption></figure>")


def _section_html(section: Section, images: Mapping[str, bytes]) -> list[str]:
    esc = html.escape
    text = [f"<p>{esc(p)}</p>" for p in section.paragraphs]
    if section.bullets:
        text.append("<ul>" + "".join(f"<li>{esc(b)}</li>" for b in section.bullets) + "</ul>")
    if section.table is not None and len(section.table.columns):
        text.append(html_table(section.table))
    figures = [_figure_html(fig, images) for fig in section.figures]
    cls = ' class="lead"' if section.lead else ""
    parts = [f'<section id="{section_id(section.title)}"{cls}><h2>{esc(section.title)}</h2>']
    if section.lead:  # text and figure side by side where there is room, stacked where not
        parts += ['<div class="lead"><div class="text">', *text, "</div>", *figures, "</div>"]
    else:
        parts += [*text, *figures]
    return parts + ["</section>"]


def render_html(doc: Document, images: Mapping[str, bytes]) -> str:
    """One self-contained HTML page; `images` maps each figure name to its PNG bytes."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(doc.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        f"<h1>{esc(doc.title)}</h1>",
    ]
    parts += [f'<div class="warning" role="alert"><strong>Warning:</strong> {esc(w)}</div>' for w in doc.warnings]
    if doc.description:
        parts.append(f'<p class="question"><strong>Question:</strong> {esc(doc.description)}</p>')
    for section in doc.sections:
        parts += _section_html(section, images)
    if doc.header:
        rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in doc.header)
        parts.append(f'<section id="{section_id(RUN_DETAILS)}"><details class="run"><summary>{RUN_DETAILS}</summary>'
                     f'<div class="table-wrap"><table class="header"><tbody>{rows}</tbody></table></div>'
                     "</details></section>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
