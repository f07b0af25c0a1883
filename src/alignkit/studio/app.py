"""The studio's web app: FastAPI with Jinja2 server-side templates and one small vanilla-JS file.

Why FastAPI + Jinja2 rather than Gradio (docs/studio.md): the pages are plain HTML rendered on the server with
autoescaping (a completion holding `<script>` shows as text), so they work without a network, load fast on a CPU
machine and can be tested in a real browser with stable selectors; the labelling page needs exact keyboard
handling and an acknowledged write per answer, which a few lines of JS give directly.

Security of a local server: every run is named relative to RUNS_DIR and resolved by `runs.resolve_run`, which
refuses anything outside it (404); task and annotator names are restricted to safe characters; writes are JSON
POSTs only (a cross-site HTML form cannot send `application/json` without a CORS preflight, which is never
granted), and a server bound to localhost accepts only `localhost`/`127.0.0.1` Host headers (DNS rebinding).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from alignkit.errors import AlignkitError, DataError
from alignkit.evaluate.runs import Run
from alignkit.studio import export as exporting
from alignkit.studio import tasks as T
from alignkit.studio.diff import word_diff
from alignkit.studio.runs import find_runs, open_run
from alignkit.studio.samples import STATUSES, filter_rows, join_samples
from alignkit.studio.store import TaskStore

PAGE_SIZE = 50
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "testserver")


class NotFound(Exception):
    pass


def _env() -> Environment:
    env = Environment(loader=PackageLoader("alignkit.studio", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    env.filters["letter"] = lambda j: T.LETTERS[j]
    env.filters["prompt_text"] = _prompt_text
    return env


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in prompt if isinstance(m, dict))
    return json.dumps(prompt, ensure_ascii=False)


def default_sampler_factory() -> Callable[[str], Any]:
    """Load each model once (on first use) for tasks that sample on demand."""
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    def sampler_for(model: str) -> Any:
        with lock:
            if model not in cache:
                from alignkit.decode.hf import HFSampler
                from alignkit.models import load_model

                cache[model] = HFSampler(*load_model(model))
            return cache[model]

    return sampler_for


def create_app(runs_dir: str | Path, store_dir: str | Path | None = None, *, local_only: bool = True,
               sampler_for: Callable[[str], Any] | None = None) -> FastAPI:
    """The app over `runs_dir`; tasks live in `store_dir` (default RUNS_DIR/.studio)."""
    root = Path(runs_dir).resolve()
    if not root.is_dir():
        raise DataError(f"runs directory {runs_dir} does not exist or is not a directory")
    store = Path(store_dir) if store_dir is not None else root / ".studio"
    env = _env()
    sampler = sampler_for or default_sampler_factory()
    fill_lock = threading.Lock()
    app = FastAPI(title="alignkit studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(packages=[("alignkit.studio", "static")]), name="static")

    def page(template: str, request: Request, code: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(template).render(request=request, root=str(root), **ctx), status_code=code)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[..., Any]) -> Response:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
        if local_only and host not in LOCAL_HOSTS:
            return PlainTextResponse("this studio answers only on localhost", status_code=403)
        if request.method == "POST" and request.headers.get("content-type", "").split(";")[0] != "application/json":
            return PlainTextResponse("POST bodies must be application/json", status_code=415)
        return await call_next(request)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return page("error.html", request, 404, message=str(exc))

    @app.exception_handler(AlignkitError)
    async def bad_request(request: Request, exc: AlignkitError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=400)
        return page("error.html", request, 400, message=str(exc))

    def run_or_404(name: str) -> Run:
        try:
            return open_run(root, name)
        except DataError as e:
            raise NotFound(str(e)) from e

    def task_or_404(name: str) -> TaskStore:
        try:
            path = T.task_path(store, name)
        except DataError as e:
            raise NotFound(str(e)) from e
        if not path.is_file():
            raise NotFound(f"no task named {name!r}")
        return TaskStore(path)

    def run_rows() -> list[dict[str, Any]]:
        from alignkit.evaluate.report import format_summary, summary_table

        out = []
        for info in find_runs(root):
            run = run_or_404(info.name)
            header, (cells,) = format_summary(summary_table([run]))
            out.append({"info": info, "n_samples": len(run.samples), "cells": dict(zip(header, cells, strict=True))})
        return out

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        tasks = []
        for name in T.list_tasks(store):
            ts = TaskStore(T.task_path(store, name))
            tasks.append({"name": name, "meta": ts.meta(), "progress": T.progress(ts), "n": len(ts.items())})
        return page("index.html", request, runs=run_rows(), tasks=tasks)

    @app.get("/runs/{name:path}", response_class=HTMLResponse)
    def run_page(request: Request, name: str) -> HTMLResponse:
        from alignkit.evaluate.report import build_section

        run = run_or_404(name)
        sections = []
        for key in ("summary", "paired", "training", "constraints", "by_type", "rewards", "headline"):
            sec = build_section([run], key)
            if sec.table is None and not sec.images:
                continue
            sections.append({"title": sec.title, "table": sec.table, "note": sec.note,
                             "images": [(c, base64.b64encode(png).decode("ascii")) for c, png in sec.images]})
        config = yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True) if run.config else ""
        return page("run.html", request, run=run, sections=sections, config=config,
                    kind=next((i.kind for i in find_runs(root) if i.name == name), "run"))

    @app.get("/samples", response_class=HTMLResponse)
    def samples_page(request: Request, run: list[str] = Query(default=[]),  # noqa: B008 (FastAPI's idiom)
                     constraint: str = "", status: str = "any",
                     changed: int = 0, diff: int = 0, page_no: int = 1) -> HTMLResponse:
        names = run or []
        runs = [run_or_404(n) for n in names]
        if status not in STATUSES:
            raise DataError(f"status must be one of {', '.join(STATUSES)}")
        rows = join_samples(runs) if runs else []
        types = sorted({t for r in rows for t in r.constraint_types})
        shown = filter_rows(rows, constraint=constraint or None, status=status, changed_only=bool(changed))
        start = (max(page_no, 1) - 1) * PAGE_SIZE
        view = shown[start:start + PAGE_SIZE]
        diffs = {}
        if diff and len(runs) >= 2:
            for r in view:
                a, b = r.cells[0], r.cells[1]
                if a is not None and b is not None:
                    diffs[r.key] = word_diff(a.completion, b.completion)
        return page("samples.html", request, all_runs=[i for i in find_runs(root) if "samples.jsonl" in i.files],
                    names=names, rows=view, total=len(rows), matched=len(shown), types=types, constraint=constraint,
                    status=status, changed=changed, diff=diff, diffs=diffs, page_no=max(page_no, 1),
                    pages=max(1, -(-len(shown) // PAGE_SIZE)))

    @app.post("/api/tasks")
    async def new_task(request: Request) -> JSONResponse:
        body = await _json(request)
        name = T.check_name(str(body.get("name", "")))
        path = T.task_path(store, name)
        limit = body.get("limit")
        limit = int(limit) if limit not in (None, "") else None
        if body.get("prompts"):
            T.task_from_prompts(path, str(body["prompts"]), str(body.get("model") or "smollm2-135m-instruct"),
                                k=int(body.get("k") or 2), name=name, seed=int(body.get("seed") or 0), limit=limit)
            counts: dict[str, int] = {"items": len(TaskStore(path).items())}
        else:
            _, counts = T.task_from_runs(path, [run_or_404(str(n)) for n in body.get("runs") or []], name=name,
                                         seed=int(body.get("seed") or 0), limit=limit)
        return JSONResponse({"task": name, "url": f"/tasks/{name}", **counts})

    @app.get("/tasks/{name}", response_class=HTMLResponse)
    def task_page(request: Request, name: str) -> HTMLResponse:
        ts = task_or_404(name)
        return page("task.html", request, name=name, meta=ts.meta(), n=len(ts.items()), progress=T.progress(ts),
                    agreement=T.agreement(ts), kinds=exporting.KINDS, store=str(store))

    @app.get("/tasks/{name}/label", response_class=HTMLResponse)
    def label_page(request: Request, name: str, annotator: str = "") -> Response:
        ts = task_or_404(name)
        if not annotator:
            return RedirectResponse(f"/tasks/{name}", status_code=303)
        T.check_name(annotator, "annotator name")
        item = T.next_item(ts, annotator)
        meta = ts.meta()
        shown: list[tuple[int, dict[str, Any]]] = []
        if item is not None:
            with fill_lock:
                item = T.fill_item(ts, item, sampler)
            shown = [(j, item.completions[i]) for j, i in enumerate(T.display_order(meta, annotator, item))]
        done = next((p.answered for p in T.progress(ts) if p.annotator == annotator), 0)
        return page("label.html", request, name=name, annotator=annotator, item=item, shown=shown, done=done,
                    n=len(ts.items()), meta=meta)

    @app.get("/api/tasks/{name}/next")
    def api_next(name: str, annotator: str) -> JSONResponse:
        ts = task_or_404(name)
        item = T.next_item(ts, annotator)
        if item is None:
            return JSONResponse({"item": None})
        with fill_lock:
            item = T.fill_item(ts, item, sampler)
        order = T.display_order(ts.meta(), annotator, item)
        return JSONResponse({"item": {"id": item.item_id, "key": item.key, "prompt": item.prompt,
                                      "completions": {T.LETTERS[j]: item.completions[i]["text"]
                                                      for j, i in enumerate(order)}}})

    @app.post("/api/tasks/{name}/answer")
    async def api_answer(request: Request, name: str) -> JSONResponse:
        ts = task_or_404(name)
        body = await _json(request)
        label = T.answer(ts, str(body.get("annotator", "")), int(body.get("item_id", -1)), str(body.get("answer", "")),
                         str(body.get("critique") or ""))
        nxt = T.next_item(ts, label.annotator)
        return JSONResponse({"ok": True, "choice": label.choice, "next": nxt.item_id if nxt else None})

    @app.get("/tasks/{name}/export")
    def export(name: str, kind: str = "pairwise", votes: str = "majority") -> Response:
        ts = task_or_404(name)
        text = exporting.export_text(ts, kind, votes)
        return PlainTextResponse(text, media_type="application/x-ndjson",
                                 headers={"Content-Disposition": f'attachment; filename="{name}-{kind}.jsonl"'})

    return app


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as e:
        raise DataError(f"request body is not JSON: {e}") from e
    if not isinstance(body, dict):
        raise DataError("request body must be a JSON object")
    return body
