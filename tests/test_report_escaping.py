"""Report text from runs is data, never markup (issue #14 item 17).

Titles, run names, methods, metric keys and frontier labels come from the command line and from run files; the
Markdown report must show them literally. The check renders the written Markdown with an independent CommonMark +
GFM-table parser (markdown-it-py) and reads the text back out of the HTML it produces; the HTML report is checked
the same way with the standard library's parser.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from alignkit.evaluate.report import md_code, md_escape, render_html, write_markdown
from alignkit.evaluate.runs import Run

TITLE = "Q3 *draft* <script>alert(1)</script> | [x](http://evil.example) ##"
NAME = "a|b *c* _d_ <i>e</i> [l](u) `t` \\|z ~~s~~ &amp;"
METHOD = "dpo|*ipo* <b>x</b> # ![img](p.png)"
LABEL = "BoN *4* | <u>n</u>"


class _Text(HTMLParser):
    """Text of every element by tag, plus every tag seen (to catch injected elements)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.stack: list[tuple[str, list[str]]] = []
        self.texts: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in ("img", "br", "meta"):
            self.stack.append((tag, []))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            t, parts = self.stack.pop()
            text = "".join(parts)
            self.texts.setdefault(t, []).append(text)
            if self.stack:
                self.stack[-1][1].append(text)
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.stack:
            self.stack[-1][1].append(data)


def _parse(page: str) -> _Text:
    p = _Text()
    p.feed(page)
    p.close()
    return p


@pytest.fixture
def runs(tmp_path: Path) -> list[Run]:
    ev = {"method": METHOD, "kl": 0.5, "reward": 1.0, "win_rate": 0.6,
          "frontier": [{"label": LABEL, "kl": 0.8, "reward": 1.2}], "my|*key*": 0.25}
    return [Run(path=tmp_path / "run", name=NAME, eval=ev)]


def test_markdown_report_shows_title_names_and_methods_literally(runs: list[Run], tmp_path: Path) -> None:
    md = write_markdown(runs, tmp_path / "report.md", title=TITLE).read_text()
    page = _parse(MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(md))
    # Nothing from the data became an element: no script, link, image other than the plots, emphasis or HTML.
    for tag in ("script", "a", "i", "b", "u", "s", "del"):
        assert tag not in page.tags, f"<{tag}> injected by report text"
    assert page.texts["h1"] == [TITLE]
    cells = page.texts["td"]
    assert f"{NAME}: {LABEL}" in cells and "my|*key*" in cells  # frontier point, headline metric key
    summary_row = cells[:2]
    assert summary_row == [NAME, METHOD]  # the pipes did not split the summary row into extra cells
    assert NAME in page.texts["code"]  # the run list names each run as code, backticks included


def test_html_report_escapes_the_same_text(runs: list[Run]) -> None:
    page = _parse(render_html(runs, title=TITLE))
    for tag in ("script", "a", "i", "b", "u"):
        assert tag not in page.tags, f"<{tag}> injected by report text"
    assert page.texts["h1"] == [TITLE] and page.texts["title"] == [TITLE]
    assert [NAME, METHOD] == page.texts["td"][:2]
    assert f"{NAME}: {LABEL}" in page.texts["td"] and "my|*key*" in page.texts["td"]


def test_markdown_text_is_one_line_and_code_spans_outlast_backticks() -> None:
    assert md_escape("two\nlines|x") == "two lines\\|x"  # a newline would end the table row
    assert md_code("a``b") == "```a``b```"
    assert md_code("`x") == "`` `x ``"  # padded: CommonMark strips one space on each side
