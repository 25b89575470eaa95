"""Temporary entries of atomic writes, and the removal of those a dead writer left behind.

Vigie writes every output into a temporary entry beside its final place and renames it into
place (cube vintages, forecast runs, pointers, scenario results), through
:mod:`features.storage.atomic`. A process killed in between leaves the temporary entry behind.
Entries name their writer: ``.tmp-<name>~<host>~<pid>~…`` (see :func:`temp_name`), so that a
later process can tell an orphan from a write in progress:

* written on this host by a process that no longer exists: stale, removed at once;
* written by a live process (or on another host sharing the folder): kept until it is older
  than the grace period (``VIGIE_TMP_GRACE_HOURS``, default 6 h; a vintage is written in
  seconds), then removed;
* temporary files that name no writer (``*.tmp``, ``*.part``, older ``.tmp-*`` names): removed
  once older than the grace period only.

:func:`sweep` runs when a process first opens a store of a home (ingest start, ``serve`` start,
any command or job reading the cube) and from ``python -m service prune``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = ".tmp-"
SEPARATOR = "~"
DEFAULT_GRACE_HOURS = 6.0
#: (folder under the home, glob of its temporary entries). Folders: cube vintages, forecast runs;
#: files: forecast pointers, model registry and leaderboard, scenario results and publication
#: marks, disclosure records, raw copies.
LOCATIONS: tuple[tuple[str, str], ...] = (
    ("cube/vintages", ".tmp-*"),
    ("forecasts/runs", ".tmp-*"),
    ("forecasts/latest", "*.tmp"),
    ("models", "*.tmp"),
    ("scenario_runs", ".*.tmp"),
    ("cube/disclosure", ".*.tmp"),
    ("raw/*", "*.part"),
)

_swept: set[str] = set()
_swept_lock = threading.Lock()
_paused = threading.local()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:60] or "host"


def temp_name(stem: str) -> str:
    """Name of the temporary entry of ``stem``, carrying this host and process id."""
    return f"{PREFIX}{stem}{SEPARATOR}{_host()}{SEPARATOR}{os.getpid()}"


def writer_of(name: str) -> tuple[str, int] | None:
    """(host, pid) a temporary entry's name carries, None when it names no writer."""
    parts = name.split(SEPARATOR)
    if len(parts) < 3 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclass(frozen=True)
class StaleEntry:
    path: Path
    reason: str  # "writer gone" or "older than grace"
    age_hours: float


def is_stale(path: Path, grace_hours: float, now: float | None = None) -> StaleEntry | None:
    """Whether a temporary entry is an orphan (see the module docstring); None: keep it."""
    try:
        age = ((now or time.time()) - path.lstat().st_mtime) / 3600
    except FileNotFoundError:
        return None
    writer = writer_of(path.name)
    if writer is not None:
        host, pid = writer
        if host == _host() and pid != os.getpid() and not _alive(pid):
            return StaleEntry(path, "writer gone", age)
    if age > grace_hours:
        return StaleEntry(path, "older than grace", age)
    return None


def find_stale(home: Path, grace_hours: float = DEFAULT_GRACE_HOURS,
               locations: Iterable[tuple[str, str]] = LOCATIONS) -> list[StaleEntry]:
    """Stale temporary entries under ``home`` (nothing is removed)."""
    now = time.time()
    out = []
    for folder, pattern in locations:
        for parent in sorted(Path(home).glob(folder)):
            for path in sorted(parent.glob(pattern)):
                entry = is_stale(path, grace_hours, now)
                if entry is not None:
                    out.append(entry)
    return out


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep(home: Path, grace_hours: float = DEFAULT_GRACE_HOURS, *, dry_run: bool = False,
          locations: Iterable[tuple[str, str]] = LOCATIONS) -> list[StaleEntry]:
    """Remove the stale temporary entries under ``home``; return them."""
    stale = find_stale(home, grace_hours, locations)
    for entry in stale:
        if not dry_run:
            remove(entry.path)
        log.info("%s stale temporary %s (%s, %.1f h old)",
                 "would remove" if dry_run else "removed", entry.path, entry.reason,
                 entry.age_hours)
    return stale


def sweep_once(home: Path, grace_hours: float = DEFAULT_GRACE_HOURS,
               locations: Iterable[tuple[str, str]] = LOCATIONS) -> None:
    """:func:`sweep` the first time this process opens a store of ``home``; never raises (a
    store must open even on a read-only home)."""
    if getattr(_paused, "depth", 0):
        return
    key = f"{Path(home).resolve()}|{sorted(locations)}"
    with _swept_lock:
        if key in _swept:
            return
        _swept.add(key)
    try:
        sweep(home, grace_hours, locations=locations)
    except OSError:
        log.warning("could not remove stale temporary entries under %s", home, exc_info=True)


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Stores opened in this block (this thread) do not sweep (``prune --dry-run``)."""
    _paused.depth = getattr(_paused, "depth", 0) + 1
    try:
        yield
    finally:
        _paused.depth -= 1
