"""Running a builder: append-only JSONL output that resumes where it stopped, a progress bar, and a report.

Resume protocol. Next to `out.jsonl` the runner keeps `out.jsonl.progress.jsonl`: its first line holds the build
settings (builder, reward, policy, sampling…), then one line per finished item, `{"key", "records", "dropped",
"skipped"}`, written *after* that item's records. On restart:

* items whose key is in the progress file are skipped (including items that produced no records), unless the
  output does not hold all the records the progress file counts for them (a torn last line): those are rebuilt;
* records in the output whose key never reached the progress file (a crash between the two writes) are removed,
  and a partly written last line is dropped, both counted in the report;
* the output is locked (`OUT.lock`, `alignkit.rundir`) for the whole build, so two builds cannot interleave;
* a progress file written with different settings is an error: mixing two builds in one file would be silent
  corruption, so the user picks a new `--out` or passes `overwrite=True`.

Determinism: items are processed in fixed batches of the input (slices of `batch_size`), and a batch that is only
partly finished is rebuilt whole (finished items' outcomes are discarded), so a build that was interrupted and
resumed writes exactly the records of an uninterrupted build with the same seed and batch size.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from alignkit.data.build.common import BuildItem
from alignkit.data.io import kind_of, parse_record
from alignkit.data.records import Record
from alignkit.errors import ConfigError, DataError
from alignkit.rundir import lock_output_file


@dataclass
class Outcome:
    """What one item produced: records, or a drop reason; plus counted skips (e.g. tied pairs)."""

    key: str
    records: list[Record] = field(default_factory=list)
    dropped: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)


class Builder(Protocol):
    """A preference-data builder: provenance settings, and items -> outcomes (one per item, same order)."""

    name: str

    def settings(self) -> dict[str, Any]: ...

    def build(self, items: Sequence[BuildItem]) -> list[Outcome]: ...


@dataclass
class BuildReport:
    """Counts for one run of a build (and totals including earlier runs of the same output)."""

    out: str
    items: int = 0
    resumed: int = 0  # items finished by an earlier run and skipped now
    processed: int = 0
    records_written: int = 0
    records_total: int = 0  # in the output file after this run
    dropped: Counter = field(default_factory=Counter)  # items that gave no records, by reason
    skipped: Counter = field(default_factory=Counter)  # finer-grained skips (tied pairs, duplicate inputs…)
    repaired: Counter = field(default_factory=Counter)  # orphan records / partial lines removed on resume
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("dropped", "skipped", "repaired"):
            d[k] = dict(getattr(self, k))
        return d

    def summary(self) -> str:
        parts = [f"{self.records_written} records written to {self.out} ({self.records_total} in file)",
                 f"{self.processed} items processed, {self.resumed} already done (resumed), {self.items} in input"]
        if self.dropped:
            parts.append("dropped items: " + ", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())))
        if self.skipped:
            parts.append("skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())))
        if self.repaired:
            parts.append("repaired on resume: " + ", ".join(f"{k}={v}" for k, v in sorted(self.repaired.items())))
        for k, v in self.extra.items():
            parts.append(f"{k}: {v}")
        return "\n".join(parts)


def record_to_dict(record: Record) -> dict[str, Any]:
    """TRL column names plus `metadata`; an unset pairwise margin is left out."""
    d = asdict(record)
    if d.get("margin", 0) is None:
        del d["margin"]
    return d


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def progress_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".progress.jsonl")


def _read_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Parsed JSON lines, and the number of unparseable lines (a crash can leave the last one partial)."""
    rows, bad = [], 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    return rows, bad


class ResumableOutput:
    """The append-only output file plus its progress log."""

    def __init__(self, out: str | Path, settings: dict[str, Any], overwrite: bool = False) -> None:
        self.out = Path(out)
        self.progress = progress_path(self.out)
        self.settings = _jsonable(settings)
        self.done: dict[str, dict[str, Any]] = {}
        self.repaired: Counter = Counter()
        self.records_in_file = 0
        if overwrite:
            for p in (self.out, self.progress):
                if p.exists():
                    p.unlink()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.progress.exists():
            self._load()
        elif self.out.exists() and self.out.stat().st_size > 0:
            raise ConfigError(f"{self.out} exists but has no progress file ({self.progress.name}), so it was not "
                              "written by a build that can resume; choose another output or pass --overwrite")
        else:
            with self.progress.open("w", encoding="utf-8") as f:
                f.write(json.dumps({"settings": self.settings}, sort_keys=True) + "\n")
            self.out.write_text("", encoding="utf-8")

    def _load(self) -> None:
        rows, bad = _read_lines(self.progress)
        if not rows or "settings" not in rows[0]:
            raise DataError("progress file has no settings header; delete it or pass --overwrite",
                            source=str(self.progress), line=1)
        if rows[0]["settings"] != self.settings:
            old, new = rows[0]["settings"], self.settings
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigError(f"{self.out} was built with different settings (differ in: {', '.join(diff)}); "
                              "use another output file or pass --overwrite to start again")
        if bad:
            self.repaired["partial_progress_lines"] += bad
        for row in rows[1:]:
            self.done[row["key"]] = row
        records, bad_records = ([], 0) if not self.out.exists() else _read_lines(self.out)
        keep = [r for r in records if r.get("metadata", {}).get("prompt_key") in self.done]
        orphans = len(records) - len(keep)
        # An item marked done whose records are not all in the output (a torn or lost last line: the progress line
        # reached the disk, the record did not) is un-marked and its remaining records removed, so it is rebuilt.
        found = Counter(r["metadata"]["prompt_key"] for r in keep)
        incomplete = {k for k, row in self.done.items() if found.get(k, 0) != int(row.get("records", 0))}
        if incomplete:
            keep = [r for r in keep if r["metadata"]["prompt_key"] not in incomplete]
            rows = [rows[0], *(r for r in rows[1:] if r["key"] not in incomplete)]
            for k in incomplete:
                del self.done[k]
            self.repaired["incomplete_items_rebuilt"] += len(incomplete)
        if orphans or bad_records or bad or incomplete:
            self.repaired["orphan_records"] += orphans
            self.repaired["partial_output_lines"] += bad_records
            tmp = self.out.with_name(self.out.name + ".tmp")
            with tmp.open("w", encoding="utf-8") as f:
                for r in keep:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            os.replace(tmp, self.out)
            tmp = self.progress.with_name(self.progress.name + ".tmp")
            with tmp.open("w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r, sort_keys=True) + "\n")
            os.replace(tmp, self.progress)
        self.records_in_file = len(keep)

    def write(self, outcome: Outcome) -> int:
        """Append an item's records (each validated by the data layer first), then mark the item done. A record
        the data layer rejects is not written; it is counted in `outcome.skipped` as `invalid_records:<field>`."""
        lines = []
        for rec in outcome.records:
            d = record_to_dict(rec)
            d["metadata"] = {**d.get("metadata", {}), "prompt_key": outcome.key}
            d = json.loads(json.dumps(d, default=str))
            try:
                parse_record(d, kind_of(rec), source=f"builder '{self.settings.get('builder')}' output")
            except DataError as e:
                key = f"invalid_records:{e.field or 'record'}"
                outcome.skipped[key] = outcome.skipped.get(key, 0) + 1
                continue
            lines.append(json.dumps(d, ensure_ascii=False) + "\n")
        if outcome.records and not lines and outcome.dropped is None:
            outcome.dropped = "invalid_records"
        with self.out.open("a", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
        entry = {"key": outcome.key, "records": len(lines), "dropped": outcome.dropped,
                 "skipped": dict(outcome.skipped)}
        with self.progress.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
        self.done[outcome.key] = entry
        self.records_in_file += len(lines)
        return len(lines)


def run_build(builder: Builder, items: Sequence[BuildItem], out: str | Path, *, batch_size: int = 8,
              overwrite: bool = False, progress: bool = True, limit: int | None = None) -> BuildReport:
    """Run `builder` over `items`, appending records to `out` (JSONL) and resuming a previous run of the same
    build. `limit` stops after that many newly processed items (a resumable partial run)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    with lock_output_file(out):
        return _run_build(builder, items, out, batch_size=batch_size, overwrite=overwrite, progress=progress,
                          limit=limit)


def _run_build(builder: Builder, items: Sequence[BuildItem], out: str | Path, *, batch_size: int, overwrite: bool,
               progress: bool, limit: int | None) -> BuildReport:
    settings = {"builder": builder.name, **builder.settings()}
    output = ResumableOutput(out, settings, overwrite=overwrite)
    report = BuildReport(out=str(out), items=len(items), repaired=Counter(output.repaired))
    seen: set[str] = set()
    unique: list[BuildItem] = []
    for item in items:
        if item.key in seen:
            report.skipped["duplicate_input_items"] += 1
            continue
        seen.add(item.key)
        unique.append(item)
        if item.key in output.done:
            report.resumed += 1
    remaining = None if limit is None else max(0, limit)
    recomputed = 0
    bar = tqdm(total=len(unique), initial=report.resumed, desc=f"build:{builder.name}", unit="prompt",
               disable=not progress, file=sys.stderr)
    try:
        # Batches are fixed slices of the input (not of what is left), and a batch with any unfinished item is
        # rebuilt whole, so sampling seeds and row positions match an uninterrupted run exactly.
        for start in range(0, len(unique), batch_size):
            batch = unique[start:start + batch_size]
            if all(i.key in output.done for i in batch):
                continue
            if remaining == 0:
                break
            outcomes = builder.build(batch)
            if [o.key for o in outcomes] != [i.key for i in batch]:
                raise DataError(f"builder '{builder.name}' returned outcomes for keys "
                                f"{[o.key for o in outcomes]} instead of {[i.key for i in batch]}")
            for outcome in outcomes:
                if outcome.key in output.done:
                    recomputed += 1
                    continue
                if remaining == 0:
                    break
                report.records_written += output.write(outcome)
                report.processed += 1
                if remaining is not None:
                    remaining -= 1
                if outcome.dropped:
                    report.dropped[outcome.dropped] += 1
                report.skipped.update(outcome.skipped)
                bar.update(1)
        if recomputed:
            report.extra["finished_items_recomputed"] = recomputed
    finally:
        bar.close()
        report.records_total = output.records_in_file
    return report
