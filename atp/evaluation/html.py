"""Self-contained HTML report: headings, text, tables and PNG figures in one file."""

from __future__ import annotations

import base64
import html
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from atp.io.atomic import atomic_write_text

DISCLAIMER = ("These results report which planning goals and criteria the plans meet. "
              "They are not a statement of clinical acceptability: every plan needs review "
              "and approval by qualified staff before any clinical use.")

FLAG_CLASSES = {"better": "better", "worse": "worse", "n.s.": "ns"}

_CSS = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 2px 6px; text-align: right; }
th { background: #eee; }
td.text { text-align: left; }
td.better { background: #c8f0c8; }
td.worse { background: #f6c6c6; }
td.ns { background: #e6e6e6; }
caption { font-weight: bold; text-align: left; padding: 4px 0; }
figure { margin: 1em 0; }
img { max-width: 100%; }
p.disclaimer { border: 1px solid #999; background: #fafad2; padding: 0.6em; }
"""


def format_cell(value) -> str:
    """Text of a table cell: real numbers to 3 significant digits, NaN/None as blank.

    Parameters
    ----------
    value : object
        The cell value (bool shown as yes/no, integers in full).

    Returns
    -------
    str
        The cell text, not HTML-escaped.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        return "" if math.isnan(v) else f"{v:.3g}"
    return str(value)


def _table(caption: str, rows: Sequence[Mapping]) -> str:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    out = ["<table>", f"<caption>{html.escape(caption)}</caption>", "<tr>"]
    out += [f"<th>{html.escape(str(c))}</th>" for c in cols]
    out.append("</tr>")
    for r in rows:
        out.append("<tr>")
        for c in cols:
            v = r.get(c)
            cls = "text" if isinstance(v, str) else "num"
            if c == "flag" and v in FLAG_CLASSES:
                cls = FLAG_CLASSES[v]
            out.append(f'<td class="{cls}">{html.escape(format_cell(v))}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "\n".join(out)


def _figure(caption: str, png_path: str | os.PathLike) -> str:
    data = base64.b64encode(Path(png_path).read_bytes()).decode("ascii")
    cap = html.escape(caption)
    return (f'<figure><img alt="{cap}" src="data:image/png;base64,{data}">'
            f"<figcaption>{cap}</figcaption></figure>")


def _paragraphs(text: str) -> str:
    parts = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "\n".join(f"<p>{html.escape(p)}</p>" for p in parts)


def render_sections(sections: Sequence[Mapping]) -> str:
    """The HTML of report sections (see `write_html_report`), without the page around.

    Parameters
    ----------
    sections : sequence of mapping
        ``{"heading", "text", "tables", "figures"}`` as in `write_html_report`.

    Returns
    -------
    str
        HTML fragment: headings, paragraphs, tables and embedded figures.
    """
    body = []
    for sec in sections:
        body.append(f"<h2>{html.escape(str(sec.get('heading', '')))}</h2>")
        if sec.get("text"):
            body.append(_paragraphs(str(sec["text"])))
        for caption, rows in sec.get("tables", ()):
            body.append(_table(str(caption), list(rows)))
        for caption, png in sec.get("figures", ()):
            body.append(_figure(str(caption), png))
    return "\n".join(body)


def render_html_report(*, title: str, sections: Sequence[Mapping]) -> str:
    """The report as one HTML string (see `write_html_report`).

    Parameters
    ----------
    title : str
        Page title and first heading.
    sections : sequence of mapping
        Report sections as in `write_html_report`.

    Returns
    -------
    str
        A complete HTML document with the disclaimer.
    """
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="disclaimer">{html.escape(DISCLAIMER)}</p>', render_sections(sections)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_html_report(path: str | os.PathLike, *, title: str,
                      sections: Sequence[Mapping]) -> Path:
    """Write a single self-contained HTML report atomically.

    A section is ``{"heading": str, "text": str (optional), "tables": [(caption,
    rows)], "figures": [(caption, png_path)]}``. PNGs are embedded as base64 data
    URIs, numbers shown to 3 significant digits, ``flag`` cells colour-coded, and all
    text escaped. A fixed disclaimer states that the report lists goals and criteria
    met, not clinical acceptability.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.html`` file.
    title : str
        Page title and first heading.
    sections : sequence of mapping
        The report sections, in order.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    atomic_write_text(path, render_html_report(title=title, sections=sections))
    return path
