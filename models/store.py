"""Forecast runs on disk, for the service to serve and the audit trail to cite.

Layout under ``Settings.forecasts_dir``::

    runs/<run_id>/forecast.csv      Hub CSV (forecast_date,target,target_end_date,location,…)
    runs/<run_id>/metadata.json     run id, model name + version, cube vintage, as_of, …
    latest/<target>_<frequency>_<level>_<model>.json   pointer to the newest run of that kind

A run is written into a temporary folder (``runs/.tmp-<run_id>~<host>~<pid>…``, see
:mod:`features.storage.atomic`) and renamed into place, and the pointer is replaced atomically
after it: a reader sees either the previous run or the complete new one. Temporary entries a
killed process left are removed when a process first opens the store (:mod:`features.tempfiles`);
old runs by ``python -m service prune``.

With ``VIGIE_STORE_URL=s3://bucket/prefix`` the same layout holds objects under
``prefix/forecasts/`` (:mod:`features.storage.objects`): a run's ``forecast.csv`` is uploaded
under its new id first, its ``metadata.json`` last, then the pointer (one ``PUT``, atomic). A
run is read, listed or pointed to only once its ``metadata.json`` exists, so a reader never sees
half a run; a failed upload removes what it wrote. Metadata of published runs (immutable) is
cached by run URL, and their CSV (64 MiB at most).
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features import tempfiles
from features.storage import objects
from models.targets import HUB_COLUMNS

#: Temporary entries of this store, relative to its root (:func:`features.tempfiles.sweep`).
TEMP_LOCATIONS = (("runs", ".tmp-*"), ("latest", "*.tmp"))
#: What a run id may look like (the store's own ids are ``20261201T101010.123456Z-abc123``).
RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,99}")
#: What a pointer's name (target_frequency_level_model) may look like.
KIND = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.@-]{0,199}")


def _safe_kind(kind: str) -> bool:
    """A pointer name that stays inside ``latest/`` (no separator, no '..', no wildcard)."""
    return bool(KIND.fullmatch(kind)) and ".." not in kind
_META_CACHE_SIZE = 4096
_CSV_CACHE_BYTES = 64 * 2**20
_meta_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
_csv_cache: OrderedDict[str, bytes] = OrderedDict()
_meta_lock = threading.Lock()


def _cached_csv(store: Any, key: str) -> bytes:
    """A published run's CSV from an object store, kept in memory (runs are immutable; at
    most ``_CSV_CACHE_BYTES`` in all, least recently read dropped first)."""
    url = store.url(key)
    with _meta_lock:
        if url in _csv_cache:
            _csv_cache.move_to_end(url)
            return _csv_cache[url]
    data = store.read_bytes(key)
    with _meta_lock:
        _csv_cache[url] = data
        while sum(len(v) for v in _csv_cache.values()) > _CSV_CACHE_BYTES and len(_csv_cache) > 1:
            _csv_cache.popitem(last=False)
    return data


@dataclass(frozen=True)
class ForecastRun:
    """A stored forecast run."""

    run_id: str
    path: Path | str
    metadata: dict[str, Any]
    store: Any = field(default=None, compare=False, repr=False)

    def read(self) -> pd.DataFrame:
        """The Hub rows of the run (``location`` as string codes)."""
        if self.store is None:
            return pd.read_csv(Path(self.path) / "forecast.csv", dtype={"location": str})
        key = f"runs/{self.run_id}/forecast.csv"
        data = (_cached_csv(self.store, key) if self.store.remote
                else self.store.read_bytes(key))
        return pd.read_csv(io.BytesIO(data), dtype={"location": str})


class ForecastStore:
    """Write and read forecast runs.

    Parameters
    ----------
    root:
        ``Settings.forecasts_dir``, any folder, an object-store URL (``s3://bucket/prefix``)
        or a store of :mod:`features.storage.objects`.
    tmp_grace_hours:
        Age after which a temporary entry whose writer cannot be checked is removed.
    """

    def __init__(self, root: Path | str | objects.ObjectStore,
                 tmp_grace_hours: float = tempfiles.DEFAULT_GRACE_HOURS) -> None:
        self.objects = (root if isinstance(root, objects.LocalStore | objects.FsspecStore)
                        else objects.open_store(root))
        #: The local folder, or the URL of an object store's prefix.
        self.root: Path | str = (self.objects.url() if self.objects.remote
                                 else self.objects.path())
        if not self.objects.remote:
            tempfiles.sweep_once(self.root, tmp_grace_hours, TEMP_LOCATIONS)

    @classmethod
    def from_settings(cls, settings: Any = None) -> ForecastStore:
        if settings is None:
            from features.settings import Settings

            settings = Settings.from_env()
        if getattr(settings, "store_url", ""):
            return cls(objects.for_settings(settings).child("forecasts"),
                       settings.tmp_grace_hours)
        return cls(settings.forecasts_dir, settings.tmp_grace_hours)

    def save(self, rows: pd.DataFrame, metadata: dict[str, Any]) -> ForecastRun:
        """Store a run atomically and make it the latest of its kind.

        Parameters
        ----------
        rows:
            Hub CSV rows.
        metadata:
            At least ``target``, ``frequency``, ``level``, ``model``, ``model_version``,
            ``vintage_id``, ``as_of``; ``run_id`` and ``created_at`` are added.
        """
        created = datetime.now(UTC)
        run_id = f"{created:%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:6]}"  # sorts by time
        meta = {**metadata, "run_id": run_id, "created_at": created.isoformat(), "rows": len(rows)}
        pointer = f"latest/{self._kind(meta)}.json"

        def point() -> None:
            self.objects.write_bytes(pointer, json.dumps({"run_id": run_id}).encode())

        # A job that lost its run publishes nothing: neither the run nor the pointer to it.
        with self.objects.folder(f"runs/{run_id}", last=("metadata.json",), publish=True,
                                 after=point) as tmp:
            rows[HUB_COLUMNS].to_csv(tmp / "forecast.csv", index=False)
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, default=str))
        return self._run(run_id, meta)

    def _run(self, run_id: str, meta: dict[str, Any]) -> ForecastRun:
        key = f"runs/{run_id}"
        path = self.objects.url(key) if self.objects.remote else self.objects.path(key)
        return ForecastRun(run_id, path, meta, self.objects)

    @staticmethod
    def _kind(meta: dict[str, Any]) -> str:
        return "_".join(str(meta[k]) for k in ("target", "frequency", "level", "model"))

    def get(self, run_id: str) -> ForecastRun:
        """A stored run (KeyError when there is none)."""
        return self._get(run_id, cached=False)

    def _get(self, run_id: str, cached: bool) -> ForecastRun:
        """``cached``: the caller just saw the run listed or pointed to (pointed runs are never
        pruned), so its metadata may come from this process's cache."""
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id) or ".." in run_id:
            raise KeyError(f"no forecast run {run_id!r} in {self.root}: expected a run id "
                           f"(letters, digits, '.', '_', '-')")
        key = f"runs/{run_id}/metadata.json"
        cache_key = self.objects.url(key)
        if self.objects.remote and cached:
            with _meta_lock:
                if cache_key in _meta_cache:
                    _meta_cache.move_to_end(cache_key)
                    return self._run(run_id, _meta_cache[cache_key])
        try:
            meta = json.loads(self.objects.read_bytes(key))
        except FileNotFoundError:
            raise KeyError(f"no forecast run {run_id!r} in {self.root}") from None
        if self.objects.remote:
            with _meta_lock:
                _meta_cache[cache_key] = meta
                while len(_meta_cache) > _META_CACHE_SIZE:
                    _meta_cache.popitem(last=False)
        return self._run(run_id, meta)

    def list_runs(self) -> list[ForecastRun]:
        """Every complete run, newest first (on an object store: those whose
        ``metadata.json``, uploaded last, exists)."""
        if self.objects.remote:
            ids = sorted({name.split("/", 1)[0] for name in self.objects.find("runs")
                          if name.endswith("/metadata.json") and name.count("/") == 1},
                         reverse=True)
        else:
            ids = sorted(self.objects.names("runs"), reverse=True)
        return [self._get(i, cached=True) for i in ids]

    def latest_kinds(self) -> list[str]:
        """The kinds (``<target>_<frequency>_<level>_<model>``) that have a latest run: one
        listing of the pointers, for a page asking which targets are forecast somewhere."""
        return [name[:-len(".json")] for name in self.objects.names("latest")
                if name.endswith(".json")]

    def latest_of_any_model(self, target: str, level: str,
                            frequency: str = "weekly") -> ForecastRun | None:
        """The newest run of any model of that target and level (the pointer written last;
        on an object store, to the second, ties broken by name), or None."""
        prefix = f"{target}_{frequency}_{level}_"
        if not _safe_kind(prefix):
            return None
        if self.objects.remote:
            newest = sorted(((str(info.get("LastModified")), name)
                             for name, info in self.objects.find("latest").items()
                             if name.startswith(prefix) and name.endswith(".json")),
                            reverse=True)
        else:
            folder = self.objects.path("latest")
            newest = sorted(((p.stat().st_mtime_ns, p.name)
                             for p in folder.glob(f"{prefix}*.json")),
                            reverse=True) if folder.is_dir() else []
        if not newest:
            return None
        return self.latest(target, level, newest[0][1][len(prefix):-len(".json")], frequency)

    def latest(
        self, target: str, level: str, model: str = "ensemble", frequency: str = "weekly"
    ) -> ForecastRun | None:
        """Newest run of that target, level and model (None when there is none)."""
        kind = self._kind(
            {"target": target, "frequency": frequency, "level": level, "model": model}
        )
        if not _safe_kind(kind):
            return None
        try:
            pointer = self.objects.read_bytes(f"latest/{kind}.json")
        except FileNotFoundError:
            return None
        return self._get(json.loads(pointer)["run_id"], cached=True)
