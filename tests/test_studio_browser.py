"""The studio in a real browser: Debian's headless Chromium driven by Playwright (no browser download).

Open the app, browse a fixture run and its samples, make a task, label five items by keyboard, kill the server
(SIGKILL) and restart it, see the labels kept, export pairwise records and train one DPO step on them with the
tiny-random model. Set STUDIO_SCREENSHOTS=DIR to also save the pages as studio-*.png (docs/img does that).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (browsers are not downloaded)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

from alignkit.cli import main  # noqa: E402
from studio_fixture import Server, make_runs  # noqa: E402

SHOTS = os.environ.get("STUDIO_SCREENSHOTS")


@pytest.fixture()
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _shot(page: object, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"studio-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_browse_label_by_keyboard_survive_a_kill_export_and_train(tmp_path: Path, browser: object) -> None:
    root = make_runs(tmp_path / "runs")
    server = Server(root)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
        page.set_default_timeout(600_000)  # a loaded CI machine renders plots slowly
        page.set_default_navigation_timeout(600_000)
        page.goto(server.url)
        assert page.locator("tr[data-run]").count() == 3
        _shot(page, "runs")
        assert page.locator("a[href='/runs/base']").count() == 1
        page.goto(server.url + "runs/base")  # the link's target; the first page with plots is slow on a loaded CPU
        page.wait_for_selector("text=Constraint accuracy by type")
        assert "punctuation:no_comma" in page.content()
        page.goto(server.url + "runs/train/dpo")
        assert page.locator("img[alt='training curves']").evaluate("i => i.naturalWidth") > 100
        _shot(page, "run")

        page.goto(server.url)
        page.check("input.pick[value='base']")
        page.check("input.pick[value='tuned']")
        page.click("#compare-btn")
        page.wait_for_selector("tr.sample")
        assert page.locator("tr.sample").count() == 6
        assert page.evaluate("window.__pwned") is None  # the completion's <script> is text, not code
        assert "<script>window.__pwned" in page.locator("tr.sample[data-key='p5']").inner_text()
        page.check("#f-changed")
        page.check("#f-diff")
        page.click("#apply")
        page.wait_for_selector("pre.diff")
        assert page.locator("tr.sample").count() == 5
        assert page.locator("pre.diff ins", has_text="river").count() == 1
        _shot(page, "samples")

        page.goto(server.url)
        page.check("input.pick[value='base']")
        page.check("input.pick[value='tuned']")
        page.fill("#task-name", "prefs")
        page.click("#create-from-runs")
        page.wait_for_url("**/tasks/prefs")
        page.fill("#annotator", "ann")
        page.click("#start-btn")
        page.wait_for_selector("#labeller")
        _shot(page, "label")
        for i, keys in enumerate((["a"], ["b"], ["1"], ["c", "too terse", "Escape", "2"], ["t"])):
            page.wait_for_selector(f"#label-progress:has-text('{i} of 5 answered')")
            for k in keys:
                if len(k) > 1 and k != "Escape":
                    page.keyboard.type(k)  # typed into the focused critique box: no answer is sent
                else:
                    page.keyboard.press(k)
        page.wait_for_selector("#all-done")
    finally:
        server.kill()

    server = Server(root)  # a fresh process on the same files
    try:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.set_default_timeout(600_000)  # a loaded CI machine renders plots slowly
        page.goto(server.url + "tasks/prefs")
        assert page.locator("tr[data-annotator='ann'] td.answered").inner_text() == "5"
        _shot(page, "task")
        page.goto(server.url + "tasks/prefs/label?annotator=ann")
        assert page.locator("#all-done").count() == 1
        page.goto(server.url + "tasks/prefs/label?annotator=bob")  # another annotator starts at the first item
        assert page.locator("#label-progress").inner_text() == "0 of 5 answered"
    finally:
        server.kill()

    pairs = tmp_path / "pairs.jsonl"
    assert main(["studio", "export", "prefs", "--store", str(root / ".studio"), "--kind", "pairwise",
                 "-o", str(pairs)]) == 0
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert len(rows) == 4  # five answers, one of them a tie
    judged = tmp_path / "cut.jsonl"
    assert main(["studio", "export", str(root / ".studio" / "prefs.sqlite"), "--kind", "judged",
                 "-o", str(judged)]) == 0
    assert any(json.loads(line)["judgment"] == "too terse" for line in judged.read_text().splitlines())
    out = tmp_path / "trained"
    assert main(["train", "--model", "tiny-random:1:32", "--data", str(pairs), "--objective", "dpo",
                 "--output-dir", str(out), "--set", "max_steps=1", "--set", "batch_size=2",
                 "--set", "progress=false"]) == 0
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [1]
