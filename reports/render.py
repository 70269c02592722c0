"""Render a report `Document` as Markdown (figures linked) or one self-contained HTML page.

The HTML embeds every figure as a base64 PNG data URI and carries its CSS inline: no
external URL, no script, so the file opens offline and can be mailed as it is.
"""

from __future__ import annotations

import base64
import html
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


@dataclass(frozen=True)
class Document:
    """A whole report: a title, header facts as (label, value) pairs, and sections."""

    title: str
    description: str
    header: tuple[tuple[str, str], ...]
    sections: tuple[Section, ...]


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
p.description { color: #555; margin-top: 0; }
div.table-wrap { overflow-x: auto; max-width: 100%; margin: 0.8rem 0; }
table { border-collapse: collapse; margin: 0; font-size: 0.88rem; }
table.header { margin: 0.8rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.55rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
table.header td { text-align: left; } table.header td:first-child { font-weight: 600; background: #fafafa; }
figure { display: inline-block; margin: 0.5rem 1rem 0.5rem 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
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
    """Markdown with figures linked as figures/<name>.png (relative to the report)."""
    lines = [f"# {doc.title}", ""]
    if doc.description:
        lines += [doc.description, ""]
    lines += [markdown_table(pd.DataFrame(list(doc.header), columns=["", " "])), ""]
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
    return "\n".join(lines).rstrip() + "\n"


def html_table(table: pd.DataFrame, css_class: str = "") -> str:
    """An HTML table of a frame of strings, every cell escaped, in a horizontally scrolling box."""
    cls = f' class="{css_class}"' if css_class else ""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    table_html = f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="table-wrap">{table_html}</div>'  # wide tables scroll, the page does not


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(doc: Document, images: Mapping[str, bytes]) -> str:
    """One self-contained HTML page; `images` maps each figure name to its PNG bytes."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(doc.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        f"<h1>{esc(doc.title)}</h1>",
    ]
    if doc.description:
        parts.append(f'<p class="description">{esc(doc.description)}</p>')
    header = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in doc.header)
    parts.append(f'<table class="header"><tbody>{header}</tbody></table>')
    for section in doc.sections:
        parts.append(f"<section><h2>{esc(section.title)}</h2>")
        parts += [f"<p>{esc(p)}</p>" for p in section.paragraphs]
        if section.bullets:
            parts.append("<ul>" + "".join(f"<li>{esc(b)}</li>" for b in section.bullets) + "</ul>")
        if section.table is not None and len(section.table.columns):
            parts.append(html_table(section.table))
        for fig in section.figures:
            if fig.name not in images:
                raise KeyError(f"figure {fig.name!r} has no image; images hold {sorted(images)}")
            parts.append(
                f'<figure><img src="{_data_uri(images[fig.name])}" alt="{esc(fig.caption)}">'
                f"<figcaption>{esc(fig.caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
