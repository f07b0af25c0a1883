"""The report's writers: one self-contained HTML file (inline CSS and base64 PNGs, no scripts, no network) or
Markdown with the PNGs in a sibling folder. Every piece of text from a run (title, run names, methods, metric
keys, labels, notes) is escaped for the target format: `html.escape` for HTML, `md_escape`/`md_code` for Markdown (issue #14.17)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
from collections.abc import Sequence
from pathlib import Path

from alignkit.evaluate.report.plots import build_sections
from alignkit.evaluate.report.tables import _as_runs
from alignkit.evaluate.runs import Run

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1400px;padding:0 1rem;
color:#1f2328;background:#fff}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.2rem}
.meta{color:#59636e;font-size:.9rem}
table{border-collapse:collapse;font-size:.9rem;margin:.6rem 0}
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}tr:nth-child(even) td{background:#fbfcfd}
.figs{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;border:1px solid #d0d7de;border-radius:6px;padding:.5rem;background:#fff;max-width:100%}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#59636e;font-size:.85rem;margin-top:.3rem}
.note{color:#8a6d00;background:#fff8c5;border:1px solid #eed888;border-radius:6px;padding:.4rem .7rem}
"""


def _html_table(header: list[str], body: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{rows}</tbody></table>"


def render_html(runs: Sequence[Run | str | Path], title: str = "alignkit report") -> str:
    """The whole report as one self-contained HTML string."""
    loaded = _as_runs(runs)
    sections = build_sections(loaded)
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class=\"meta\">{len(loaded)} run(s), generated {now}: "
             + ", ".join(f"<code>{html.escape(r.name)}</code> ({html.escape(str(r.path))})" for r in loaded)
             + "</p>"]
    for sec in sections:
        parts.append(f"<section id=\"{sec.key}\"><h2>{html.escape(sec.title)}</h2>")
        if sec.table is not None:
            parts.append(_html_table(*sec.table))
        if sec.images:
            parts.append("<div class=\"figs\">")
            for caption, png in sec.images:
                b64 = base64.b64encode(png).decode("ascii")
                parts.append(f"<figure><img src=\"data:image/png;base64,{b64}\" alt=\"{html.escape(caption)}\">"
                             f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            parts.append("</div>")
        if sec.note:
            parts.append(f"<p class=\"note\">{html.escape(sec.note)}</p>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _atomic_write(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(data, encoding="utf-8")
    tmp.replace(path)


def write_html(runs: Sequence[Run | str | Path], path: str | Path, title: str = "alignkit report") -> Path:
    """Write the self-contained HTML report; returns its path."""
    p = Path(path)
    _atomic_write(p, render_html(runs, title))
    return p


# Characters that can start Markdown markup inside a line (CommonMark inline syntax, GFM tables and strikethrough,
# ATX heading closers). CommonMark lets any ASCII punctuation be backslash-escaped, so escaping these is lossless.
_MD_SPECIAL = frozenset("\\`*_[]<>&~|#")


def _one_line(s: str) -> str:
    # A newline would end a table row or a heading, or start a new block.
    return " ".join(s.splitlines()) if ("\n" in s or "\r" in s) else s


def md_escape(s: str) -> str:
    """`s` as literal Markdown text (a table cell, heading, note or caption): markup characters backslash-escaped,
    newlines folded into spaces. e.g. `a|*b*` becomes `a\\|\\*b\\*`."""
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in _one_line(s))


def md_code(s: str) -> str:
    """`s` as a Markdown code span whose fence is longer than any backtick run inside it (CommonMark §6.1)."""
    s = _one_line(s)
    run = best = 0
    for c in s:
        run = run + 1 if c == "`" else 0
        best = max(best, run)
    fence = "`" * (best + 1)
    # One leading and trailing space is stripped when both are present; pad so backticks and spaces survive.
    pad = " " if s.startswith("`") or s.endswith("`") or (s.startswith(" ") and s.endswith(" ")) else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def write_markdown(runs: Sequence[Run | str | Path], path: str | Path, title: str = "alignkit report") -> Path:
    """Write a Markdown report; plots go to `<stem>_files/<section>-<i>.png` next to it."""
    p = Path(path)
    loaded = _as_runs(runs)
    sections = build_sections(loaded)
    fig_dir = p.with_name(f"{p.stem}_files")
    lines = [f"# {md_escape(title)}", "",
             f"{len(loaded)} run(s): " + ", ".join(f"{md_code(r.name)} ({md_escape(str(r.path))})" for r in loaded), ""]
    for sec in sections:
        lines += [f"## {md_escape(sec.title)}", ""]
        if sec.table is not None:
            header, body = sec.table
            lines.append("| " + " | ".join(md_escape(h) for h in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in body]
            lines.append("")
        for i, (caption, png) in enumerate(sec.images):
            fig_dir.mkdir(parents=True, exist_ok=True)
            name = f"{sec.key}-{i}.png"
            (fig_dir / name).write_bytes(png)
            lines += [f"![{md_escape(caption)}]({fig_dir.name}/{name})", "", f"*{md_escape(caption)}*", ""]
        if sec.note:
            lines += [f"> **Note:** {md_escape(sec.note)}", ""]
    _atomic_write(p, "\n".join(lines))
    return p
