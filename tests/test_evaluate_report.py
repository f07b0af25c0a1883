"""The run report: summary table, sections, self-contained HTML, Markdown + PNGs, CLI, and a real browser check."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from alignkit.cli import main
from alignkit.errors import DataError
from alignkit.evaluate.report import SECTION_TITLES, render_html, summary_table, write_html, write_markdown
from alignkit.evaluate.runs import load_run, load_runs
from alignkit.evaluate.stats import Estimate

PNG = "<img src=\"data:image/png;base64,"


def make_run(root: Path, name: str, *, method: str, acc: float, before: float | None = None, kl: float = 0.5,
             reward: float = 1.0, steps: int = 6, strategies: bool = False, seed: int = 0) -> Path:
    """A complete fixture run directory (config, metrics, samples, eval)."""
    rng = np.random.default_rng(seed)
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"objective:\n  name: {method}\n  beta: 0.1\nmodel: tiny-random\n")
    with (d / "metrics.jsonl").open("w") as f:
        for s in range(1, steps + 1):
            f.write(json.dumps({"step": s, "loss": 0.69 - 0.05 * s, "tokens": 100 * s, "seconds": 0.5 * s,
                                "rewards/accuracy": min(1.0, 0.5 + 0.07 * s), "rewards/margin": 0.1 * s}) + "\n")
            if s % 3 == 0:
                f.write(json.dumps({"step": s, "eval/loss": 0.7 - 0.04 * s}) + "\n")
    with (d / "samples.jsonl").open("w") as f:
        for i in range(12):
            row = {"prompt": f"p{i}", "completion": f"c{i}", "reward": float(reward + rng.normal()),
                   "compute": {"forward_tokens": 40, "generated_tokens": 20, "reward_calls": 1}}
            f.write(json.dumps(row) + "\n")
        if strategies:
            for strat, budgets in (("best-of-n", (1, 4, 16)), ("qalign", (4, 16))):
                for n in budgets:
                    for i in range(5):
                        row = {"prompt": f"p{i}", "completion": "x", "reward": float(np.log(n) + rng.normal(0, .1)),
                               "strategy": strat, "budget": n,
                               "compute": {"forward_tokens": 50 * n, "generated_tokens": 20 * n, "reward_calls": n}}
                        f.write(json.dumps(row) + "\n")
    ev = {"method": method, "constraint_accuracy": {"value": acc, "low": acc - 0.1, "high": acc + 0.1, "n": 50},
          "reward": {"value": reward, "low": reward - 0.2, "high": reward + 0.2, "n": 50},
          "kl": {"value": kl, "low": kl - 0.05, "high": kl + 0.05, "n": 50},
          "win_rate": 0.6, "compute": {"forward_tokens": 12000, "generated_tokens": 3000, "reward_calls": 50},
          "honesty": {"prudence": {"value": 0.4, "low": 0.3, "high": 0.5}, "note": "text is ignored"}}
    if before is not None:
        ev["baseline"] = {"constraint_accuracy": {"value": before, "low": before - 0.1, "high": before + 0.1}}
    if strategies:
        ev["frontier"] = [{"label": f"BoN-{n}", "kl": float(np.log(n) - (n - 1) / n), "reward": float(np.log(n))}
                          for n in (2, 4, 16)]
    (d / "eval.json").write_text(json.dumps(ev))
    return d


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    return [make_run(tmp_path, "dpo", method="dpo", acc=0.55, before=0.4, kl=0.8, reward=1.2),
            make_run(tmp_path, "bon", method="best-of-n", acc=0.62, kl=1.2, reward=1.5, strategies=True, seed=1)]


def test_load_run_reads_every_file(runs: list[Path]) -> None:
    run = load_run(runs[0])
    assert run.name == "dpo" and run.method == "dpo"
    assert run.config["objective"]["beta"] == 0.1
    assert len(run.metrics) == 8 and len(run.samples) == 12
    assert run.eval["kl"]["value"] == 0.8


def test_summary_table_rows(runs: list[Path]) -> None:
    rows = summary_table(runs)
    assert [r["run"] for r in rows] == ["dpo", "bon"]
    assert [r["method"] for r in rows] == ["dpo", "best-of-n"]
    acc = rows[0]["constraint_accuracy"]
    assert (acc.value, acc.low, acc.high, acc.n) == pytest.approx((0.55, 0.45, 0.65, 50))
    assert isinstance(acc, Estimate)
    assert rows[1]["kl"].value == 1.2 and rows[1]["win_rate"].value == 0.6
    assert rows[0]["compute"] == {"forward_tokens": 12000.0, "generated_tokens": 3000.0, "reward_calls": 50.0}
    assert rows[0]["final_loss"] == pytest.approx(0.69 - 0.3)


def test_summary_falls_back_to_samples_and_metrics(tmp_path: Path) -> None:
    d = tmp_path / "bare"
    d.mkdir()
    (d / "samples.jsonl").write_text("\n".join(json.dumps({"prompt": "p", "completion": "c", "reward": r,
                                                           "compute": {"forward_tokens": 10}}) for r in (1, 2, 3)))
    (row,) = summary_table([d])
    assert row["method"] == "bare" and row["reward"].value == pytest.approx(2.0)
    assert row["compute"] == {"forward_tokens": 30.0}
    assert row["constraint_accuracy"] is None and row["kl"] is None


def test_samples_without_reward_are_counted_in_a_note(tmp_path: Path) -> None:
    d = tmp_path / "partial"
    d.mkdir()
    rows = [{"prompt": "p", "completion": "c", "reward": 1.0}, {"prompt": "p", "completion": "c", "reward": None}]
    (d / "samples.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    page = render_html([d])
    assert "samples without a numeric reward, left out: partial (1)" in page


def test_html_has_every_section_with_plots(runs: list[Path]) -> None:
    page = render_html(runs, title="cmp")
    for title in SECTION_TITLES.values():
        assert f"<h2>{title}</h2>" in page
    assert page.count(PNG) >= 6  # training x2, rewards, constraints, compute, frontier
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    for b64 in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        assert base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")
    assert "best-of-n" in page and "55.0% [45.0, 65.0]" in page
    assert "honesty.prudence" in page  # nested headline estimates are listed


def test_sections_without_data_are_skipped_with_a_note(tmp_path: Path) -> None:
    d = tmp_path / "only-config"
    d.mkdir()
    (d / "config.yaml").write_text("objective: kto\n")
    page = render_html([d])
    for title in SECTION_TITLES.values():
        assert f"<h2>{title}</h2>" in page
    assert PNG not in page
    assert page.count('class="note"') == 9  # every section but the summary
    assert "no run has samples.jsonl with numeric rewards" in page


def test_online_rl_runs_get_reward_and_kl_curves(tmp_path: Path) -> None:
    d = tmp_path / "grpo"
    d.mkdir()
    (d / "config.yaml").write_text("objective: grpo\n")
    rows = [{"step": s, "reward": 0.3 + 0.02 * s, "kl": 0.001 * s, "clip_ratio": 0.0} for s in range(1, 9)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = render_html([d])
    start, end = (page.index(f"<h2>{SECTION_TITLES[k]}</h2>") for k in ("training", "rewards"))
    training = page[start:end]
    assert PNG in training and "no run has metrics.jsonl rows" not in training


def test_bad_run_directories_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a run directory"):
        load_run(tmp_path / "empty")
    d = tmp_path / "broken"
    d.mkdir()
    (d / "metrics.jsonl").write_text('{"step": 1}\n{oops\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2: bad JSON"):
        load_run(d)


def test_duplicate_run_names_are_disambiguated(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", "run", method="dpo", acc=0.5)
    b = make_run(tmp_path / "b", "run", method="ipo", acc=0.6)
    assert [r.name for r in load_runs([a, b])] == ["a/run", "b/run"]


def test_markdown_writes_pngs_next_to_it(runs: list[Path], tmp_path: Path) -> None:
    md = write_markdown(runs, tmp_path / "out" / "report.md")
    text = md.read_text()
    for title in SECTION_TITLES.values():
        assert f"## {title}" in text
    pngs = sorted((tmp_path / "out" / "report_files").glob("*.png"))
    assert len(pngs) >= 6
    for p in pngs:
        assert f"(report_files/{p.name})" in text
        assert p.read_bytes().startswith(b"\x89PNG")


def test_cli_report(runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, md = tmp_path / "r.html", tmp_path / "r.md"
    assert main(["report", *map(str, runs), "-o", str(out), "--markdown", str(md)]) == 0
    printed = capsys.readouterr().out
    assert "alignkit runs" in printed and "dpo" in printed and "wrote" in printed
    assert PNG in out.read_text() and md.exists()
    assert main(["report", str(runs[0]), "--quiet"]) == 0
    assert (runs[0] / "report.html").exists()
    assert main(["report", str(tmp_path / "missing")]) == 2


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = """<script>
window.addEventListener('load', () => {
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify(Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]));
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_opens_in_a_headless_browser(runs: list[Path], tmp_path: Path) -> None:
    page = write_html(runs, tmp_path / "report.html").read_text()
    n_images = page.count(PNG)
    probe = tmp_path / "probe.html"  # the report itself has no scripts; a copy gets a probe that reads image sizes
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    profile = tmp_path / "chrome-profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
           "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"probe output missing from the DOM dump; stderr: {proc.stderr[-2000:]}"
    images = json.loads(m.group(1).replace("&quot;", '"'))
    assert len(images) == n_images >= 6
    for complete, width, height in images:
        assert complete and width > 100 and height > 100  # decoded, not a broken-image placeholder
    shot = tmp_path / "shot.png"
    proc = subprocess.run(cmd[:-2] + ["--window-size=1400,3000", f"--screenshot={shot}", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.read_bytes().startswith(b"\x89PNG")
