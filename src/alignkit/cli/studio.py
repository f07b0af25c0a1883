"""`alignkit studio [RUNS_DIR]`: the local web app over runs (browse, compare, label); `alignkit studio export`."""

from __future__ import annotations

import argparse
from pathlib import Path

from alignkit.cli import add_command
from alignkit.errors import ConfigError

EXAMPLES = """  alignkit studio runs/demo                      # http://127.0.0.1:8765, tasks in runs/demo/.studio
  alignkit studio runs --port 9000 --store labels/
  alignkit studio export prefs --kind pairwise -o pairs.jsonl --store runs/demo/.studio
  alignkit studio export runs/demo/.studio/prefs.sqlite --kind judged -o cut.jsonl
  alignkit train --model smollm2-135m-instruct --data pairs.jsonl --objective dpo --output-dir runs/mine
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "studio", "A local web app over a runs directory: browse runs and samples side by side, "
                    "label preferences (several annotators, saved at once), export pairwise/judged/unpaired JSONL. "
                    "`alignkit studio export TASK` writes a task's labels without the server.", EXAMPLES)
    p.add_argument("runs_dir", nargs="?", default="runs", metavar="RUNS_DIR",
                   help="directory holding run directories (default: runs); or the word `export`, see below")
    p.add_argument("task", nargs="?", metavar="TASK",
                   help="with `export`: the task's name (in --store) or the path of its .sqlite file")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, this machine only; anything else serves the network)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--store", type=Path, default=None,
                   help="folder of the labelling tasks' SQLite files (default: RUNS_DIR/.studio)")
    p.add_argument("--kind", default="pairwise", help="export: pairwise, unpaired, judged or feedback")
    p.add_argument("--votes", default="majority", help="export: majority (one record set per item) or each")
    p.add_argument("-o", "--output", type=Path, help="export: the JSONL file to write")
    p.add_argument("--overwrite", action="store_true", help="export: replace the output file if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.runs_dir == "export":
        return _export(args)
    if args.task is not None:
        raise ConfigError(f"unexpected argument {args.task!r}: `alignkit studio RUNS_DIR` serves one directory")
    return serve(Path(args.runs_dir), args.host, args.port, args.store)


def serve(runs_dir: Path, host: str, port: int, store: Path | None) -> int:
    import socket

    try:
        import uvicorn

        from alignkit.studio.app import LOCAL_HOSTS, create_app
    except ImportError as e:
        raise ConfigError(f"alignkit studio needs the studio extra ({e.name} is missing): "
                          "pip install 'alignkit[studio]'") from e

    local = host in LOCAL_HOSTS
    app = create_app(runs_dir, store, local_only=local)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # bound here so the printed URL has the real port (--port 0)
    sock.listen(2048)  # listening before the URL is printed: a browser that opens it at once waits in the backlog
    # until uvicorn starts accepting instead of being refused (a slow start on a loaded machine failed the test)
    shown = "127.0.0.1" if host in ("127.0.0.1", "localhost") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{sock.getsockname()[1]}/"
    print(f"alignkit studio on {runs_dir.resolve()}: {url}", flush=True)
    if not local:
        print(f"warning: bound to {host}: anyone who can reach this address can read these runs and label",
              flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _export(args: argparse.Namespace) -> int:
    from alignkit.studio.export import export_task
    from alignkit.studio.store import TaskStore
    from alignkit.studio.tasks import TASK_SUFFIX, task_path

    if not args.task:
        raise ConfigError("alignkit studio export TASK --kind pairwise -o pairs.jsonl: name the task")
    if args.output is None:
        raise ConfigError("alignkit studio export: give the output file with -o FILE.jsonl")
    if args.task.endswith(TASK_SUFFIX) or "/" in args.task:
        path = Path(args.task)
    else:
        path = task_path(args.store or Path("runs") / ".studio", args.task)
    if not path.is_file():
        raise ConfigError(f"no task at {path} (give --store, the folder of the task files, or the .sqlite path)")
    counts = export_task(TaskStore(path), args.kind, args.output, votes=args.votes, overwrite=args.overwrite)
    print(f"wrote {counts['records']} {args.kind} records from {counts['items']} answered items to {args.output}"
          + "".join(f"; {k.replace('_', ' ')}: {v}" for k, v in sorted(counts.items())
                    if k not in ("records", "items")))
    return 0
