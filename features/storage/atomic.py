"""Atomic writes: into a temporary entry beside the final place, then renamed into place.

A reader sees the previous file (or none) or the complete new one, never half of one. The
temporary entry is named ``.tmp-<final name>~<host>~<pid>~<random><suffix>`` (see
:func:`features.tempfiles.temp_name`): it matches the sweep's patterns of every folder Vigie
writes in (``.tmp-*``, ``*.tmp``, ``.*.tmp``, ``*.part``), and a later process removes it as
soon as its writer is gone (:mod:`features.tempfiles`). On any error before the rename the
temporary entry is removed and the error raised again; the final place is left as it was.

Options shared by every function here:

``publish``
    rename under :func:`features.fencing.publishing`: inside a job that lost its run nothing is
    renamed (:class:`features.fencing.FencedError`); no-op outside jobs.
``after``
    called right after the rename, still under the same publication block (a pointer to the new
    entry, written with ``publish=False``).
``fsync``
    flush the written bytes to disk before the rename.
``suffix`` / ``temp_dir`` (files only)
    the temporary file's suffix (default ``.tmp``) and folder (default: the final file's; it must
    be on the same file system).

Writers that take a path or a file handle (parquet, NetCDF, ``np.savez``, a copy) use the context
managers :func:`atomic_path` and :func:`atomic_dir`; bytes, text and JSON have
:func:`atomic_write_bytes`, :func:`atomic_write_text` and :func:`atomic_write_json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from features import fencing, tempfiles

TEMP_SUFFIX = ".tmp"


def temp_path(final: str | Path, *, suffix: str = TEMP_SUFFIX,
              temp_dir: str | Path | None = None) -> Path:
    """A fresh name for a temporary entry of ``final`` (nothing is created)."""
    final = Path(final)
    folder = Path(temp_dir) if temp_dir is not None else final.parent
    unique = f"{tempfiles.SEPARATOR}{secrets.token_hex(4)}"
    return folder / f"{tempfiles.temp_name(final.name)}{unique}{suffix}"


def _create(final: Path, suffix: str, temp_dir: str | Path | None, folder: bool) -> Path:
    """Create the temporary entry (file or folder) with the mode ``open``/``mkdir`` give."""
    while True:
        tmp = temp_path(final, suffix=suffix, temp_dir=temp_dir)
        try:
            if folder:
                os.mkdir(tmp)
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return tmp


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_tree(folder: str | Path) -> None:
    """Flush every file under ``folder`` to disk."""
    for path in Path(folder).rglob("*"):
        if path.is_file():
            fsync_file(path)


def _switch(tmp: Path, final: Path, publish: bool, after: Callable[[], Any] | None) -> None:
    with fencing.publishing() if publish else contextlib.nullcontext():
        os.replace(tmp, final)
        if after is not None:
            after()


@contextlib.contextmanager
def _renamed_if_done(tmp: Path, final: Path, sync: Callable[[Path], Any] | None,
                     discard: Callable[[Path], Any], publish: bool,
                     after: Callable[[], Any] | None) -> Iterator[None]:
    """Around the block that fills ``tmp``: when it ends without error, ``sync(tmp)`` (if
    given) and the rename to ``final``; on any error, ``discard(tmp)`` and the error again."""
    try:
        yield
        if sync is not None:
            sync(tmp)
        _switch(tmp, final, publish, after)
    except BaseException:
        discard(tmp)
        raise


def _remove_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_path(final: str | Path, *, suffix: str = TEMP_SUFFIX,
                temp_dir: str | Path | None = None, fsync: bool = False, publish: bool = False,
                after: Callable[[], Any] | None = None) -> Iterator[Path]:
    """Yield the path of an empty temporary file for a writer to fill (it may replace it);
    renamed to ``final`` when the block ends without error, removed otherwise."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if temp_dir is not None:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
    tmp = _create(final, suffix, temp_dir, folder=False)
    with _renamed_if_done(tmp, final, fsync_file if fsync else None, _remove_file, publish,
                          after):
        yield tmp


@contextlib.contextmanager
def atomic_dir(final: str | Path, *, fsync: bool = False, publish: bool = False,
               after: Callable[[], Any] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; renamed to ``final`` (which must not exist or
    be empty) when the block ends without error, removed with its content otherwise."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create(final, "", None, folder=True)
    with _renamed_if_done(tmp, final, fsync_tree if fsync else None,
                          partial(shutil.rmtree, ignore_errors=True), publish, after):
        yield tmp


def atomic_write_bytes(path: str | Path, data: bytes, **options: Any) -> Path:
    """Write ``data`` to ``path`` atomically (options: see the module docstring)."""
    with atomic_path(path, **options) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8",
                      **options: Any) -> Path:
    """Write ``text`` to ``path`` atomically, encoded (UTF-8 by default)."""
    return atomic_write_bytes(path, text.encode(encoding), **options)


def atomic_write_json(path: str | Path, value: Any, *, indent: int | None = None,
                      default: Callable[[Any], Any] | None = None, ensure_ascii: bool = True,
                      allow_nan: bool = True, sort_keys: bool = False,
                      separators: tuple[str, str] | None = None, **options: Any) -> Path:
    """Write ``json.dumps(value, …)`` to ``path`` atomically, UTF-8 (JSON options as
    :func:`json.dumps`'s; make the value safe first with :mod:`features.storage.jsonsafe`)."""
    text = json.dumps(value, indent=indent, default=default, ensure_ascii=ensure_ascii,
                      allow_nan=allow_nan, sort_keys=sort_keys, separators=separators)
    return atomic_write_text(path, text, **options)
