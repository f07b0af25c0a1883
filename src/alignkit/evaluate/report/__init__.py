"""Compare runs: a summary table, plots, and one self-contained HTML file (or Markdown + PNGs).

`write_html(runs, path)` embeds every plot as a base64 PNG in a single HTML file with inline CSS and no scripts or
network references, so it opens anywhere. `write_markdown(runs, path)` writes the same sections with the PNGs in a
sibling folder `<stem>_files/`. Sections whose data is absent are kept with a note saying what was missing.

What is read from each run (see `alignkit.evaluate.runs` for the files):
* `eval.json` (all keys optional): `method` (str); `constraint_accuracy`, `reward`, `kl`, `win_rate` (estimates:
  `{"value", "low", "high"[, "n"]}` or a bare number); `compute` (mapping of counts, e.g. forward_tokens,
  generated_tokens, reward_calls, seconds); `baseline` (mapping with the same estimate keys, measured on the model
  before alignment: the "before" of before/after plots); `ifeval` (`prompt_strict`, `prompt_loose`,
  `instruction_strict`, `instruction_loose` estimates); `frontier` (list of `{"label", "kl", "reward"}` extra
  reward–KL points, e.g. best-of-N at several N). Any other estimate, top-level or one mapping deep, is listed
  under "All headline metrics".
* `metrics.jsonl`: `step` (else the row index) with `loss`, `rewards/accuracy` (or `rewards/accuracies`),
  `rewards/margin` (or `rewards/margins`), `eval/<name>` keys, and online RL's per-step `reward` and `kl`.
* `samples.jsonl`: `reward` for distributions; with `strategy` (and optional `budget`) and `compute`, the
  reward-vs-compute plot (x = mean forward tokens per sample; y = mean reward with CI).

Modules, by concern: `tables` (what is read from a run, the summary table), `plots` (the plotted sections) and
`writers` (HTML and Markdown). This package replaced the single `report.py` (issue #22); its public names are
re-exported here.
"""

from __future__ import annotations

from alignkit.evaluate.report.plots import build_section, build_sections
from alignkit.evaluate.report.tables import (
    ACCURACY_KEYS,
    ESTIMATE_KEYS,
    LOSS_KEYS,
    MARGIN_KEYS,
    ONLINE_KEYS,
    SECTION_TITLES,
    Section,
    format_compute,
    format_summary,
    print_summary,
    summary_table,
)
from alignkit.evaluate.report.writers import md_code, md_escape, render_html, write_html, write_markdown

__all__ = ["ACCURACY_KEYS", "ESTIMATE_KEYS", "LOSS_KEYS", "MARGIN_KEYS", "ONLINE_KEYS", "SECTION_TITLES", "Section",
           "build_section", "build_sections", "format_compute", "format_summary", "md_code", "md_escape", "print_summary",
           "render_html", "summary_table", "write_html", "write_markdown"]
