"""Where Vigie keeps what it publishes: a local folder (the default) or an object store.

``VIGIE_STORE_URL`` names the place of the cube vintages, the forecast runs, the scenario
results and the model registry: unset, the home folder (``VIGIE_HOME``, layout and bytes as
before); a path or ``file://`` URL, another local folder; ``s3://bucket/prefix``, an
S3-compatible object store through ``fsspec``/``s3fs``. ``VIGIE_STORE_OPTIONS`` (a JSON object)
is passed to the file system, e.g. ``{"endpoint_url": "http://10.0.0.9:9000"}``; credentials
and endpoint are otherwise read the usual way (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL``, ``AWS_PROFILE``…).

Both kinds of store have the same methods, on keys (``/``-separated paths under the store's
root, e.g. ``forecasts/latest/inc_hosp_weekly_national_ensemble.json``):

* one object: :meth:`read_bytes`, :meth:`write_bytes` (atomic: a reader sees the previous
  object or the whole new one; locally written then renamed, on S3 one ``PUT``),
  :meth:`exists`, :meth:`delete`;
* a folder of objects published together: :meth:`folder` yields an empty local folder to fill.
  Locally it is :func:`features.storage.atomic.atomic_dir` (renamed into place). On S3 there is
  no rename: the folder's key must be new (vintage and run ids are unique) and its files are
  uploaded under it, the ``last`` ones (the manifest a reader looks for) after all the others,
  so a reader that requires the manifest never sees a partial folder; on any error the objects
  already uploaded are removed and nothing is published;
* :meth:`names` (direct children of a key), :meth:`local_copy` (a local file to open with a
  library that wants a path), :meth:`stamp` (changes whenever something under a key changes:
  the API's freshness).

``publish=True`` runs the switch (rename, or the last ``PUT``) under
:func:`features.fencing.publishing`: a job that lost its run publishes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from features import fencing
from features.storage.atomic import atomic_dir, atomic_write_bytes

log = logging.getLogger(__name__)

#: URL schemes of object stores (anything else with ``://`` is refused).
REMOTE_SCHEMES = ("s3",)


class StoreConfigError(ValueError):
    """``VIGIE_STORE_URL`` or ``VIGIE_STORE_OPTIONS`` cannot be used."""


def is_url(location: str | Path) -> bool:
    """Whether ``location`` names an object store (``s3://…``) rather than a local path."""
    return isinstance(location, str) and urlsplit(location).scheme in REMOTE_SCHEMES


def parse_options(text: str | None) -> dict:
    """``VIGIE_STORE_OPTIONS``: a JSON object (empty or unset: no option)."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreConfigError(
            f"VIGIE_STORE_OPTIONS, line {exc.lineno}, column {exc.colno}: expected a JSON "
            f"object, found invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise StoreConfigError(
            f"VIGIE_STORE_OPTIONS, line 1, column 1: expected a JSON object, found "
            f"{type(value).__name__}")
    return value


def check_url(url: str) -> str:
    """A valid ``VIGIE_STORE_URL`` (stripped), or :class:`StoreConfigError` saying why not."""
    url = (url or "").strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise StoreConfigError(f"VIGIE_STORE_URL: expected a URL, found a control character "
                               f"in {url!r}")
    parts = urlsplit(url)
    if "://" not in url or parts.scheme == "file":
        return url
    if parts.scheme not in REMOTE_SCHEMES:
        raise StoreConfigError(f"VIGIE_STORE_URL: expected a local folder, file:// or "
                               f"{', '.join(s + '://' for s in REMOTE_SCHEMES)}, found "
                               f"scheme {parts.scheme!r} in {url!r}")
    if not parts.netloc:
        raise StoreConfigError(f"VIGIE_STORE_URL: expected {parts.scheme}://bucket/prefix, "
                               f"found no bucket in {url!r}")
    return url.rstrip("/")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def newest_mtime(path: Path) -> int:
    """Newest mtime (ns) of a folder and its direct entries (atomic renames touch the folder),
    or of a file; 0 when missing."""
    try:
        best = path.stat().st_mtime_ns
        if not path.is_dir():
            return best
        for child in path.iterdir():
            best = max(best, child.stat().st_mtime_ns)
        return best
    except OSError:
        return 0


class LocalStore:
    """A store in a local folder: the files are where they always were."""

    remote = False

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def child(self, key: str) -> LocalStore:
        return LocalStore(self.path(key))

    def path(self, key: str = "") -> Path:
        return self.root / key if key else self.root

    def url(self, key: str = "") -> str:
        return str(self.path(key))

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes, **options: Any) -> None:
        atomic_write_bytes(self.path(key), data, **options)

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def remove_tree(self, key: str) -> None:
        """Remove the folder ``key`` and everything in it (never raises)."""
        shutil.rmtree(self.path(key), ignore_errors=True)

    def names(self, key: str = "") -> list[str]:
        """Direct children of ``key``, sorted, without the hidden (temporary) ones."""
        folder = self.path(key)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self.path(key)
        if not path.exists():
            raise FileNotFoundError(str(path))
        yield path

    @contextlib.contextmanager
    def folder(self, key: str, *, last: Iterable[str] = (), fsync: bool = False,
               publish: bool = False, after: Callable[[], Any] | None = None) -> Iterator[Path]:
        with atomic_dir(self.path(key), fsync=fsync, publish=publish, after=after) as tmp:
            yield tmp

    def stamp(self, key: str = "") -> int:
        """Newest mtime of a folder and its direct entries, or of a file (:func:`newest_mtime`)."""
        return newest_mtime(self.path(key))


class FsspecStore:
    """A store under ``protocol://bucket/prefix`` through an fsspec file system."""

    remote = True

    def __init__(self, url: str, options: dict | None = None, fs: Any = None) -> None:
        parts = urlsplit(url)
        self.protocol = parts.scheme
        self.options = dict(options or {})
        self.base = _join(parts.netloc, parts.path)
        self.fs = fs if fs is not None else _filesystem(self.protocol, self.options)

    def __repr__(self) -> str:
        return f"FsspecStore({self.url()!r})"

    def child(self, key: str) -> FsspecStore:
        return FsspecStore(self.url(key), self.options, self.fs)

    def _full(self, key: str = "") -> str:
        return _join(self.base, key)

    def url(self, key: str = "") -> str:
        return f"{self.protocol}://{self._full(key)}"

    def read_bytes(self, key: str) -> bytes:
        return self.fs.cat_file(self._full(key))

    def write_bytes(self, key: str, data: bytes, *, publish: bool = False,
                    **_options: Any) -> None:
        """One ``PUT``: atomic on S3 (``fsync`` and the temporary-file options are moot)."""
        with fencing.publishing() if publish else contextlib.nullcontext():
            self.fs.pipe_file(self._full(key), data)

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._full(key)))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._full(key))

    def names(self, key: str = "") -> list[str]:
        try:
            listed = self.fs.ls(self._full(key), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = {str(p).rstrip("/").rsplit("/", 1)[-1] for p in listed}
        return sorted(n for n in names if n and not n.startswith("."))

    def find(self, key: str = "") -> dict[str, dict]:
        """Every object under ``key`` (relative key → listing details)."""
        full = self._full(key)
        try:
            found = self.fs.find(full, detail=True, withdirs=False)
        except FileNotFoundError:
            return {}
        return {name[len(full):].lstrip("/"): info for name, info in found.items()}

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """The object downloaded to a local temporary file, removed after the block."""
        fd, name = tempfile.mkstemp(prefix="vigie-store-", suffix=Path(key).suffix)
        os.close(fd)
        try:
            self.fs.get_file(self._full(key), name)
            yield Path(name)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)

    @contextlib.contextmanager
    def folder(self, key: str, *, last: Iterable[str] = (), fsync: bool = False,
               publish: bool = False, after: Callable[[], Any] | None = None) -> Iterator[Path]:
        """Fill a local folder; upload it under the new ``key``, ``last`` files last."""
        if self.find(key):
            raise FileExistsError(f"{self.url(key)} already holds objects: a published folder "
                                  f"is never written twice")
        tmp = Path(tempfile.mkdtemp(prefix="vigie-upload-"))
        try:
            yield tmp
            files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
            final = [f for f in files if f in set(last)]
            for name in [f for f in files if f not in final]:
                self.fs.put_file(str(tmp / name), self._full(_join(key, name)))
            with fencing.publishing() if publish else contextlib.nullcontext():
                for name in final:
                    self.fs.put_file(str(tmp / name), self._full(_join(key, name)))
                if after is not None:
                    after()
        except BaseException:
            self.remove_tree(key)
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def remove_tree(self, key: str) -> None:
        """Remove every object under ``key`` (best effort: never raises)."""
        try:
            names = list(self.find(key))
            if names:
                self.fs.rm([self._full(_join(key, n)) for n in names])
        except Exception:  # the cleanup of a failed write must not hide its error
            log.warning("could not remove %s", self.url(key),
                                                exc_info=True)

    def stamp(self, key: str = "") -> int:
        """A number that changes whenever an object under ``key`` is added, replaced or
        removed (its listing's names, sizes, ETags and modification times); 0 when empty."""
        found = self.find(key)
        if not found:
            return 0
        digest = hashlib.blake2b(digest_size=8)
        for name in sorted(found):
            info = found[name]
            digest.update(f"{name}|{info.get('size')}|{info.get('ETag')}|"
                          f"{info.get('LastModified')}\n".encode())
        return int.from_bytes(digest.digest(), "big") >> 1


ObjectStore = LocalStore | FsspecStore

_filesystems: dict[tuple[str, str], Any] = {}
_filesystems_lock = threading.Lock()


def _filesystem(protocol: str, options: dict) -> Any:
    """One file system per protocol and options in this process (listings never cached:
    another process may publish at any moment)."""
    key = (protocol, json.dumps(options, sort_keys=True, default=str))
    with _filesystems_lock:
        fs = _filesystems.get(key)
        if fs is None:
            import fsspec

            extra = {"use_listings_cache": False} if protocol == "s3" else {}
            fs = fsspec.filesystem(protocol, skip_instance_cache=True, **extra, **options)
            _filesystems[key] = fs
        return fs


def open_store(location: str | Path, options: dict | None = None) -> ObjectStore:
    """The store rooted at a local folder or at an object-store URL."""
    if is_url(location):
        return FsspecStore(str(location), options)
    text = str(location)
    if text.startswith("file://"):
        text = urlsplit(text).path
    return LocalStore(Path(text))


def for_settings(settings: Any) -> ObjectStore:
    """The store of ``settings``: ``settings.store_url``, else its home folder."""
    url = getattr(settings, "store_url", "") or ""
    if not url:
        return LocalStore(settings.home)
    return open_store(url, getattr(settings, "store_options", None) or {})
