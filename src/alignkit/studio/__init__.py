"""`alignkit studio`: a local web app over a directory of runs (issue #17).

* `runs`      find run directories under RUNS_DIR (never a path outside it) and describe them;
* `samples`   join the samples of several runs by prompt, with per-constraint pass/fail and filters;
* `diff`      a word-level diff of two completions;
* `store`     one SQLite file per labelling task, in WAL mode: every answer is committed before the reply;
* `tasks`     build a task from runs (or from a prompts file and a model), serve items, progress, agreement;
* `export`    labels → `pairwise` / `unpaired` / `judged` / `feedback` JSONL that `alignkit train` reads;
* `app`       the FastAPI app (Jinja2 templates, a little vanilla JS); `alignkit.cli.studio` starts it.

The studio sits on top of the library (DESIGN.md "The web studio"): it reads run directories through
`alignkit.evaluate` and writes records through `alignkit.data`; nothing below imports it.
"""
