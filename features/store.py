"""The cube store: immutable vintages on disk, catalogued in the database, read ``as_of`` a date.

Layout under ``$VIGIE_HOME/cube``::

    vintages/<vintage_id>/daily.nc, weekly.nc, quarterly.nc, yearly.nc   (NetCDF4)
    vintages/<vintage_id>/tables/<name>.parquet                          (non-time-series tables)
    vintages/<vintage_id>/manifest.json                                   (what the catalog holds)

A vintage is written into a temporary folder (``vintages/.tmp-<id>~<host>~<pid>~…``, see
:mod:`features.storage.atomic`) and renamed into place (atomic on one file system); only then is
its catalog row inserted. A crash at any point leaves the previous vintage current: a folder
without a catalog row is never served. The temporary folders a killed process leaves are removed
when a process first opens the store (:mod:`features.tempfiles`); old vintages by
``python -m service prune`` (:mod:`service.retention`).

With ``VIGIE_STORE_URL=s3://bucket/prefix`` the same files are objects under
``prefix/cube/vintages/<vintage_id>/`` (:mod:`features.storage.objects`): written under that new
key, ``manifest.json`` last, then catalogued. The catalog row is the publication: a reader only
opens catalogued vintages, so a vintage whose upload failed or was killed is never served (its
objects are removed on failure; a killed writer's stay unreferenced). The catalog's ``path``
holds the vintage's URL; reads download a dataset once and cache it by that URL, which names the
immutable vintage.

Reads: ``open_cube(frequency, as_of)`` takes the latest vintage issued on or before ``as_of`` and
removes observations dated on or after ``as_of``, so that a backtest never sees the future.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import xarray as xr

from features import fencing, tempfiles
from features.catalog import as_utc, get_engine, utcnow, vintages
from features.errors import NoVintageError
from features.settings import Settings
from features.storage import jsonsafe, objects

NETCDF_ENGINE = "netcdf4"
_CACHE_SIZE = 16


def to_date(value: dt.date | str | pd.Timestamp | None) -> dt.date | None:
    if value is None:
        return None
    return pd.Timestamp(value).date()


class CubeStore:
    """Vintages of the territorial cube for one ``Settings``."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.root = self.settings.cube_dir
        self.engine = get_engine(self.settings.database_url)
        #: Where vintages are written: the home folder or ``VIGIE_STORE_URL``.
        self.objects = objects.for_settings(self.settings)
        # What a killed ingest, forecast or scenario left half-written under this home.
        tempfiles.sweep_once(self.settings.home, self.settings.tmp_grace_hours)

    # ------------------------------------------------------------------ catalog
    def list_vintages(self) -> list[dict]:
        """Vintages newest first, as catalog rows (dicts)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(vintages).order_by(vintages.c.issued_at.desc()))
            out = [dict(r._mapping) for r in rows]
        for row in out:
            row["issued_at"] = as_utc(row["issued_at"])
        return out

    def vintage_at(self, as_of: dt.date | str | None = None) -> dict:
        """The vintage served on ``as_of``: the latest issued on or before the end of that day.

        When every vintage was issued after ``as_of`` (backtesting over history ingested later),
        the earliest vintage that holds every source of the newest one is returned with
        ``issued_after_as_of = True``: its values for dates before ``as_of`` may include later
        revisions. Why not simply the earliest: a source added after the first ingest (SI-DEP
        cases came a year after admissions) would then be missing from every backtest and
        scenario of a long-lived store, while a fresh store would have it: the same command
        would give other answers on two machines.
        """
        listed = self.list_vintages()
        if not listed:
            raise NoVintageError(
                f"no cube vintage in {self.settings.database_url}: run 'python -m service ingest'")
        day = to_date(as_of)
        if day is None:
            return {**listed[0], "issued_after_as_of": False}
        limit = dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)
        for row in listed:
            if row["issued_at"] <= limit:
                return {**row, "issued_after_as_of": False}
        newest = _sources_read(listed[0])
        complete = [row for row in listed if _sources_read(row) >= newest]
        return {**complete[-1], "issued_after_as_of": True}

    def current_vintage(self) -> dict:
        return self.vintage_at(None)

    # ------------------------------------------------------------------ write
    def write_vintage(self, datasets: dict[str, xr.Dataset], tables: dict[str, pd.DataFrame],
                      manifest: dict, issued_at: dt.datetime | None = None) -> str:
        """Write a new immutable vintage atomically and catalog it; return its id."""
        issued_at = issued_at or utcnow()
        vintage_id = f"{issued_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        key = f"cube/vintages/{vintage_id}"
        final = self.objects.url(key)
        with self.objects.folder(key, last=("manifest.json",), fsync=True) as tmp:
            row_counts = {}
            for frequency, ds in datasets.items():
                ds = ds.assign_attrs(vintage_id=vintage_id, issued_at=issued_at.isoformat())
                # Uncompressed: about 12 MB per vintage, written and read twice as fast as zlib.
                with _hdf5_lock:
                    ds.to_netcdf(tmp / f"{frequency}.nc", engine=NETCDF_ENGINE)
                row_counts[frequency] = {name: int(ds[name].notnull().sum())
                                         for name in ds.data_vars}
            if tables:
                (tmp / "tables").mkdir()
                for name, table in tables.items():
                    table.to_parquet(tmp / "tables" / f"{name}.parquet", index=False)
            full_manifest = {**manifest, "id": vintage_id, "issued_at": issued_at.isoformat(),
                             "row_counts": row_counts}
            (tmp / "manifest.json").write_text(jsonsafe.dumps(full_manifest, indent=2))
        try:
            with self.engine.begin() as conn:
                fencing.check(conn)  # a job that lost its run catalogs nothing
                conn.execute(vintages.insert().values(
                    id=vintage_id, issued_at=issued_at, path=final,
                    data_dir=manifest.get("data_dir"), sources=manifest.get("sources", {}),
                    files=manifest.get("files", {}), row_counts=row_counts,
                    fitted=jsonsafe.jsonable(manifest.get("fitted", {}))))
        except fencing.FencedError:
            self.objects.child(key).remove_tree("")
            raise
        return vintage_id

    # ------------------------------------------------------------------ read
    def open(self, frequency: str = "daily", as_of: dt.date | str | None = None,
             vintage_id: str | None = None) -> xr.Dataset:
        """The cube of one frequency, as known on ``as_of`` (see module docstring)."""
        if vintage_id is not None:
            row = next((v for v in self.list_vintages() if v["id"] == vintage_id), None)
            if row is None:
                raise NoVintageError(f"no vintage '{vintage_id}'")
            row = {**row, "issued_after_as_of": False}
        else:
            row = self.vintage_at(as_of)
        ds = _load_cached(self._folder(row), frequency)
        day = to_date(as_of)
        if day is not None:
            dates = ds.indexes["date"]
            if dates.is_monotonic_increasing:
                # The same dates as the mask below, as a slice: views of the cached arrays, not
                # copies (a date task's daily cube: 1 ms instead of 35; a track record opens
                # one per date and territory level).
                ds = ds.isel(date=slice(0, _dates_before(dates, day)))
            else:
                ds = ds.sel(date=ds["date"] < pd.Timestamp(day))
        return ds.assign_attrs(
            as_of=day.isoformat() if day else "",
            vintage_issued_after_as_of=int(bool(row["issued_after_as_of"])))

    def open_table(self, name: str, as_of: dt.date | str | None = None) -> pd.DataFrame:
        row = self.vintage_at(as_of)
        folder = self._folder(row)
        try:
            data = folder.read_bytes(f"tables/{name}.parquet")
        except FileNotFoundError:
            raise KeyError(f"vintage {row['id']} has no table '{name}'") from None
        return pd.read_parquet(io.BytesIO(data))

    def manifest(self, vintage_id: str | None = None) -> dict:
        row = self.current_vintage() if vintage_id is None else next(
            v for v in self.list_vintages() if v["id"] == vintage_id)
        return json.loads(self._folder(row).read_bytes("manifest.json"))

    def _folder(self, row: dict) -> objects.ObjectStore:
        """The store rooted at a catalogued vintage's folder (local path or URL)."""
        return objects.open_store(row["path"], self.settings.store_options)


def _sources_read(row: dict) -> set[str]:
    """Names of the sources a vintage read successfully (catalog keys are ``source:file``)."""
    sources = row.get("sources") or {}
    return {key.split(":", 1)[0] for key, info in sources.items()
            if not isinstance(info, dict) or info.get("status", "ok") == "ok"}


_cache: OrderedDict[tuple[str, str], xr.Dataset] = OrderedDict()
_cache_lock = threading.Lock()
_hdf5_lock = threading.Lock()


def _load_cached(folder: objects.ObjectStore, frequency: str) -> xr.Dataset:
    """Vintages are immutable, so a loaded dataset can be shared for the life of the process
    (keyed by the vintage folder's path or URL, which names the vintage)."""
    key = (folder.url(), frequency)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    try:
        # libhdf5/libnetcdf are not safe for concurrent use from several threads (the API's
        # request threads and a job thread can load or write a vintage at the same moment):
        # one file operation at a time (an object store's download happens before). Reads are
        # rare (once per vintage and frequency); the cache serves the rest.
        with folder.local_copy(f"{frequency}.nc") as path, _hdf5_lock, \
                xr.open_dataset(path, engine=NETCDF_ENGINE) as ds:
            loaded = ds.load()
    except FileNotFoundError:
        raise KeyError(f"vintage {Path(folder.url()).name} has no '{frequency}' dataset") \
            from None
    for name in ("territory", "territory_level", "territory_parent", "territory_group",
                 "territory_name"):
        if name in loaded.coords:
            loaded = loaded.assign_coords({name: loaded[name].astype(str).astype(object)})
    with _cache_lock:
        _cache[key] = loaded
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def open_cube(frequency: str = "daily", as_of: dt.date | str | None = None,
              settings: Settings | None = None) -> xr.Dataset:
    """Shortcut: ``CubeStore(settings).open(frequency, as_of)``."""
    return CubeStore(settings).open(frequency, as_of)


def _dates_before(dates: pd.DatetimeIndex, day: dt.date) -> int:
    """How many of the sorted ``dates`` are before ``day``. Compared as dates first: a day far
    outside the nanosecond range (year 642, 9999: an API caller's ``as_of``) must not reach
    ``searchsorted``, which converts it to nanoseconds and overflows."""
    if len(dates) == 0 or day <= dates[0].date():
        return 0
    if day > dates[-1].date():
        return len(dates)
    return int(dates.searchsorted(pd.Timestamp(day)))
