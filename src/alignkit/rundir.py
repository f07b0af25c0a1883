"""Run directories that two processes cannot share by accident, and directory replacement that never leaves a gap.

Locking (issue #14.8). Every command that writes a run directory (train, rl, eval, data build) holds an exclusive
lock on it for the whole run: `RUN_DIR/.alignkit.lock` (or `OUT.lock` next to a single output file). The lock is an
`flock` on that file, so the kernel releases it when the holder dies, even by kill -9: a leftover file whose PID is
no longer running is *stale* and is simply taken over (and reported). The file holds the holder's PID, host and
command line, so a second run fails with one line that says who holds the directory. Where `flock` is not supported
by the file system, the PID and host in the file decide: a live PID on this host (or any PID on another host, which
cannot be checked) keeps the lock; a dead one is stale.

The lock is re-entrant inside one process (a pipeline that trains, then evaluates into the same directory), and
only the global main process of a multi-process run (`RANK` unset or 0) takes it.

Writability (issue #14.15). Creating the lock file is the first write into the directory, before any data or model
is loaded, so a read-only or unwritable output directory fails at once with one line instead of a traceback later.

This module imports nothing from alignkit but `errors`, so train, rl, evaluate and data.build can all use it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from alignkit.errors import AlignkitError, ConfigError

LOCK_NAME = ".alignkit.lock"
F = TypeVar("F", bound=Callable[..., Any])


class RunLockedError(AlignkitError):
    """Another live process holds the run directory's lock."""


# Locks this process holds: resolved lock path -> [fd, depth]. Re-entrancy keeps nested calls on one directory working.
_HELD: dict[str, list[int]] = {}


def is_global_main() -> bool:
    """True in a single-process run and on rank 0 of torchrun / accelerate launch (which set RANK)."""
    return os.environ.get("RANK", "0") in ("", "0")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096).decode("utf-8", "replace")
        return json.loads(raw) if raw.strip() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    since = holder.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')} ({holder.get('command', '?')}){when}"


def _unwritable(path: Path, e: OSError) -> ConfigError:
    reason = e.strerror or type(e).__name__
    return ConfigError(f"cannot write to {path} ({reason}); choose another output directory or fix its permissions")


def ensure_writable_dir(path: str | Path) -> Path:
    """Create `path` (with parents) and prove a file can be written in it; one-line ConfigError otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} exists and is not a directory; choose another output directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise _unwritable(path, e) from None
    return path


def _try_flock(fd: int) -> bool | None:
    """True: locked; False: held by someone else; None: this file system has no flock."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None


def _acquire(lock_file: Path, log: Callable[[str], None]) -> int:
    for _ in range(20):  # retried only when the file was replaced between open and lock (a holder just left)
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _unwritable(lock_file.parent, e) from None
        got = _try_flock(fd)
        holder = _read_holder(fd)
        if got is False:
            os.close(fd)
            raise RunLockedError(f"{lock_file.parent} is in use by {_describe(holder)}; wait for it to finish or "
                                 f"stop it (lock file {lock_file})")
        try:
            same_file = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:
            os.close(fd)
            continue
        pid, host = holder.get("pid"), holder.get("host")
        if holder and got is None and (host != socket.gethostname() or (isinstance(pid, int) and _pid_alive(pid)
                                                                        and pid != os.getpid())):
            os.close(fd)
            raise RunLockedError(f"{lock_file.parent} is in use by {_describe(holder)} (file system without flock: "
                                 f"if that process is gone, delete {lock_file})")
        if holder and pid != os.getpid():
            gone = "no longer running" if isinstance(pid, int) and not _pid_alive(pid) else "no longer holds it"
            log(f"{lock_file}: took over a stale lock of {_describe(holder)} ({gone})")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(Path(sys.argv[0]).name.split()
                                                                                  + sys.argv[1:])[:300],
              "started": time.time()}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode())
        return fd
    raise RunLockedError(f"{lock_file}: could not take the lock (the file keeps being replaced)")


@contextlib.contextmanager
def lock_file(path: str | Path, *, log: Callable[[str], None] = print, enabled: bool | None = None) -> Iterator[Path]:
    """Hold the exclusive lock `path` (a lock file) for the duration of the block; see the module docstring."""
    path = Path(path)
    if enabled is None:
        enabled = is_global_main()
    if not enabled:
        yield path
        return
    # Directories this lock creates are removed again if the run leaves them empty (e.g. it refused its config).
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    ensure_writable_dir(path.parent)
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield path
        finally:
            _HELD[key][1] -= 1
        return
    fd = _acquire(path, log)
    _HELD[key] = [fd, 1]
    try:
        yield path
    finally:
        del _HELD[key]
        # Unlink while still holding the lock, so a waiting opener re-checks the inode and retries on a new file.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        for d in created:  # deepest first; stops at the first that is not empty
            try:
                d.rmdir()
            except OSError:
                break


def lock_run_dir(run_dir: str | Path, *, log: Callable[[str], None] = print,
                 enabled: bool | None = None) -> contextlib.AbstractContextManager[Path]:
    """Lock a run directory (`RUN_DIR/.alignkit.lock`), creating it and checking it is writable first."""
    return lock_file(Path(run_dir) / LOCK_NAME, log=log, enabled=enabled)


def lock_output_file(out: str | Path, *, log: Callable[[str], None] = print,
                     enabled: bool | None = None) -> contextlib.AbstractContextManager[Path]:
    """Lock a single output file (a data build's JSONL) through `OUT.lock` beside it."""
    out = Path(out)
    return lock_file(out.with_name(out.name + ".lock"), log=log, enabled=enabled)


def locks_output_dir(prepare: Callable[[Any, Callable[[str], None]], None] | None = None) -> Callable[[F], F]:
    """Decorator for `fn(cfg, ..., log=None)`: hold the lock on `cfg.output_dir` while `fn` runs. `prepare(cfg, log)`
    runs first, under the lock, on the main process (e.g. the train checks of what a previous run left there);
    messages go to `fn`'s own `log` keyword when it is given."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(cfg: Any, *args: Any, **kwargs: Any) -> Any:
            log = kwargs.get("log") or print
            with lock_run_dir(cfg.output_dir, log=log):
                if prepare is not None and is_global_main():
                    prepare(cfg, log)
                return fn(cfg, *args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def replace_dir(new: Path, target: Path) -> None:
    """Put directory `new` at `target`, replacing what is there, so `target` is never missing or half-written.

    The one directory swap of the library: run `final/`, `alignkit export`, checkpoint `final/`, the converted
    model cache (`alignkit.models.prepare_dir`) and `merge_and_save` all use it (issues #14.7, #14.14). On Linux the
    two are swapped in one `renameat2(RENAME_EXCHANGE)` call, so a concurrent reader of `target/FILE` sees the old
    directory or the new one, whole; elsewhere (or on a file system without it) the old directory is renamed aside
    first, a gap of one rename. The old contents are removed only after the new ones are in place.

    A `target` that is a symlink (the versioned-pointer layout `NAME -> .NAME.v-ID` that model caches were written
    in before) is swapped the same way, then the link and the version it pointed to are removed.
    """
    new, target = Path(new), Path(target)
    pointee: Path | None = None
    if target.is_symlink():
        pointee = target.parent / os.readlink(target)
    elif not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        old = new  # `new` now holds the old contents (or the old link)
    else:
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
        os.rename(new, target)
    for leftover in (old, pointee):
        if leftover is None:
            continue
        if leftover.is_symlink() or leftover.is_file():
            leftover.unlink(missing_ok=True)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0
