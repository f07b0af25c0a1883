"""The studio's done-means on a real `make demo` directory, in Debian's headless Chromium (issue #17).

    python benchmarks/studio_on_demo.py runs/demo [--pairs 20] [--shots docs/img]

Starts `alignkit studio RUNS_DIR`, checks that every demo run with samples is listed and that the base and trained
runs' samples show side by side, makes a task from them in the page, labels `--pairs` items by keyboard as a person
would (by the verifier's reward, then by which answer finished), downloads the pairwise export through
the task page's link, and trains two DPO steps of the embedded model on it with `alignkit train`: no file is
touched by hand. Prints what it did; exits non-zero at the first thing that does not work. Not a timed test: it
needs a demo run (~10-20 min) first, so `tests/test_studio_browser.py` covers the same path on a fixture.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright


def _start(root: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "alignkit", "studio", str(root), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"studio printed no URL: {line!r}")
    return proc, m.group(1)


def _rewards(runs: list[Path]) -> dict[tuple[str, str], tuple[float, bool]]:
    """(prompt id, completion) -> (verifier reward, ended by EOS): the stand-in 'person' labels the blind pair by
    the reward, then prefers the answer that finished; a tie only when both are equal on both."""
    out = {}
    for run in runs:
        for line in (run / "samples.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            out[(str(row["id"]), row["completion"].strip())] = (float(row.get("reward", 0.0)),
                                                                row.get("finish_reason") == "eos")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_dir", type=Path)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--shots", type=Path, help="save screenshots of the pages here")
    ap.add_argument("--base", default="base")
    ap.add_argument("--trained", default="rft-eval")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    root: Path = args.runs_dir
    expected = sorted(p.parent.name for p in root.glob("*/samples.jsonl"))
    rewards = _rewards([root / args.base, root / args.trained])
    task = f"demo-prefs-{time.strftime('%Y%m%d-%H%M%S')}"  # a new task each time: the studio never overwrites one
    proc, url = _start(root)
    work = Path(tempfile.mkdtemp(prefix="studio-demo-"))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(300_000)

            def shot(name: str) -> None:
                if args.shots:
                    args.shots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(args.shots / f"studio-demo-{name}.png"), full_page=True)

            page.goto(url)
            listed = sorted(page.locator("tr[data-run]").evaluate_all("rs => rs.map(r => r.dataset.run)"))
            missing = sorted(set(expected) - set(listed))
            assert not missing, f"runs with samples not listed: {missing} (listed: {listed})"
            print(f"runs listed: {listed}")
            shot("runs")
            page.goto(url + f"runs/{args.trained}")
            page.wait_for_selector("text=Constraint accuracy by type")
            shot("run")
            page.goto(url)
            page.check(f"input.pick[value='{args.base}']")
            page.check(f"input.pick[value='{args.trained}']")
            page.click("#compare-btn")
            page.wait_for_selector("tr.sample")
            print(f"samples side by side: {page.locator('tr.sample').count()} rows on the first page")
            shot("samples")

            page.goto(url)
            page.check(f"input.pick[value='{args.base}']")
            page.check(f"input.pick[value='{args.trained}']")
            page.fill("#task-name", task)
            page.fill("#task-limit", str(args.pairs))
            page.click("#create-from-runs")
            page.wait_for_url(f"**/tasks/{task}", timeout=60_000)
            page.fill("#annotator", "demo")
            page.click("#start-btn")
            page.wait_for_selector("#labeller")
            shot("label")
            for i in range(args.pairs):
                page.wait_for_selector(f"#label-progress:has-text('{i} of {args.pairs} answered')")
                key = page.locator("span.key").inner_text().strip()
                texts = page.locator("pre.completion").all_inner_texts()
                scores = [rewards[(key, t.strip())] for t in texts]
                page.keyboard.press("t" if scores[0] == scores[1] else ("a" if scores[0] > scores[1] else "b"))
            page.wait_for_selector("#all-done")
            page.goto(url + f"tasks/{task}")
            shot("task")
            with page.expect_download() as dl:
                page.click("#export-pairwise")
            pairs = work / "pairs.jsonl"
            dl.value.save_as(pairs)
            browser.close()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    rows = [json.loads(line) for line in pairs.read_text(encoding="utf-8").splitlines()]
    print(f"labelled {args.pairs} items; exported {len(rows)} pairwise records (ties are not pairs)")
    assert rows, "the export has no pairs"
    out = work / "dpo"
    cmd = [sys.executable, "-m", "alignkit", "train", "--model", "smollm2-135m-instruct", "--data", str(pairs),
           "--objective", "dpo", "--output-dir", str(out), "--set", "max_steps=2", "--set", "batch_size=2",
           "--set", "progress=false"]
    subprocess.run(cmd, check=True)
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in steps if "loss" in r]
    assert len(losses) == 2, steps
    print(f"trained 2 DPO steps on the export: losses {losses}; run in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
