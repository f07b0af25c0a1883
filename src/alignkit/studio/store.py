"""A labelling task's durable store: one SQLite database per task, in WAL mode.

Why SQLite in WAL mode (docs/studio.md): an answer is one small transaction, committed before the server replies,
so killing the server (or the machine) loses nothing that was acknowledged; WAL lets the pages read while an
annotator writes, and `synchronous=FULL` syncs the log on every commit. Several annotators write to the same
file without a lock of our own, and the file is a single portable artefact next to the runs.

Tables: `meta` (key → JSON value), `items` (one comparison: prompt, completions, context) and `labels` (one answer
of one annotator on one item: the displayed order, the canonical choice, the critique; the latest answer of an
annotator on an item replaces the previous one).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.errors import DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
  item_id INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  prompt TEXT NOT NULL,
  completions TEXT NOT NULL,
  context TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS labels (
  item_id INTEGER NOT NULL REFERENCES items(item_id),
  annotator TEXT NOT NULL,
  choice TEXT NOT NULL,
  shown TEXT NOT NULL,
  display_order TEXT NOT NULL,
  critique TEXT NOT NULL DEFAULT '',
  created REAL NOT NULL,
  PRIMARY KEY (item_id, annotator)
);
"""

# Canonical answers besides a completion's index ("0", "1", ...): these are what exports and agreement read.
TIE, ALL_BAD, SKIP = "tie", "both_bad", "skip"
SPECIAL_CHOICES = (TIE, ALL_BAD, SKIP)


@dataclass(frozen=True)
class Item:
    item_id: int
    key: str
    prompt: Any
    completions: list[dict[str, Any]]  # {"text", "source", ...}; empty until sampled for a prompts-file task
    context: dict[str, Any]


@dataclass(frozen=True)
class Label:
    item_id: int
    annotator: str
    choice: str  # a completion index as text, or tie / both_bad / skip
    shown: str  # what the annotator pressed: a letter, tie, both_bad or skip
    display_order: list[int]  # display_order[j] = index of the completion shown as letter j
    critique: str
    created: float


class TaskStore:
    """Access to one task database; each call opens its own connection (safe from any server thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, meta: dict[str, Any], items: list[tuple[str, Any, list[dict[str, Any]],
               dict[str, Any]]]) -> TaskStore:
        """A new task at `path` (refused if it exists: a task is never overwritten) with its items."""
        p = Path(path)
        if p.exists():
            raise DataError(f"task {p} already exists; choose another name or remove it yourself", source=str(p))
        if not items:
            raise DataError("a task needs at least one item")
        p.parent.mkdir(parents=True, exist_ok=True)
        store = cls(p)
        with store.connect() as db:
            db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                           [(k, json.dumps(v, ensure_ascii=False)) for k, v in meta.items()])
            db.executemany("INSERT INTO items(key, prompt, completions, context) VALUES (?, ?, ?, ?)",
                           [(key, json.dumps(prompt, ensure_ascii=False), json.dumps(comps, ensure_ascii=False),
                             json.dumps(ctx, ensure_ascii=False)) for key, prompt, comps, ctx in items])
        return store

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # the WAL is synced at every commit: an answer acknowledged is kept
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def meta(self) -> dict[str, Any]:
        if not self.path.is_file():
            raise DataError(f"no task at {self.path}", source=str(self.path))
        with self.connect() as db:
            return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}

    def items(self) -> list[Item]:
        with self.connect() as db:
            rows = db.execute("SELECT item_id, key, prompt, completions, context FROM items ORDER BY item_id").fetchall()
        return [_item(r) for r in rows]

    def item(self, item_id: int) -> Item:
        with self.connect() as db:
            row = db.execute("SELECT item_id, key, prompt, completions, context FROM items WHERE item_id = ?",
                             (item_id,)).fetchone()
        if row is None:
            raise DataError(f"task {self.path.name} has no item {item_id}")
        return _item(row)

    def set_completions(self, item_id: int, completions: list[dict[str, Any]]) -> None:
        """Fill an item sampled on demand; refused once the item has completions (they may have been labelled)."""
        with self.connect() as db:
            cur = db.execute("UPDATE items SET completions = ? WHERE item_id = ? AND completions = '[]'",
                             (json.dumps(completions, ensure_ascii=False), item_id))
            if cur.rowcount != 1:
                raise DataError(f"item {item_id} already has completions")

    def put_label(self, label: Label) -> None:
        """Write one answer (committed and synced before this returns)."""
        with self.connect() as db:
            db.execute("INSERT INTO labels(item_id, annotator, choice, shown, display_order, critique, created) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(item_id, annotator) DO UPDATE SET "
                       "choice = excluded.choice, shown = excluded.shown, display_order = excluded.display_order, "
                       "critique = excluded.critique, created = excluded.created",
                       (label.item_id, label.annotator, label.choice, label.shown, json.dumps(label.display_order),
                        label.critique, label.created or time.time()))

    def labels(self, annotator: str | None = None) -> list[Label]:
        sql = "SELECT item_id, annotator, choice, shown, display_order, critique, created FROM labels"
        args: tuple[Any, ...] = ()
        if annotator is not None:
            sql, args = sql + " WHERE annotator = ?", (annotator,)
        with self.connect() as db:
            rows = db.execute(sql + " ORDER BY created, item_id", args).fetchall()
        return [Label(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]


def _item(row: tuple[Any, ...]) -> Item:
    return Item(int(row[0]), row[1], json.loads(row[2]), json.loads(row[3]), json.loads(row[4]))
