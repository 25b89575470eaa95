"""Retention: which cube vintages, forecast runs and backtests ``python -m service prune``
deletes.

Vintages and forecast runs are immutable and were kept forever. The policy keeps:

* **cube vintages**: the newest ``VIGIE_RETAIN_VINTAGES`` (default 30) by issue time, and every
  vintage something kept refers to: the served one (the newest), the vintage of every kept
  forecast run (its ``metadata.json``), of every stored scenario result
  (``$VIGIE_HOME/scenario_runs/<id>.json``), of the models' leaderboard, and every vintage any
  audit row names (answers given to a token holder, forecasts published). A vintage catalogued
  with a folder outside this home's ``cube/vintages`` is never touched.
* **forecast runs**: per target, frequency, level and model, the newest
  ``VIGIE_RETAIN_FORECAST_RUNS`` (default 8), every run a ``latest`` pointer names (what the API,
  the alerts and the dashboard publish), and every run any audit row names.
* **backtest store** (``$VIGIE_HOME/models/backtests/<target>/<plan>/<level>/<date>_<vintage>``,
  the past dates' raw forecasts the retrospective track record and calibration reuse): per
  target, the newest ``VIGIE_RETAIN_FORECAST_RUNS`` plans (a plan is one model and member set,
  newest by its last file written; the plan in use is rewritten at every track record); in
  those, a date's file made from a vintage no longer catalogued (pruned now or before) is
  deleted too: it can never be read again (a date is recomputed from the vintage served as of
  it). Backtest files pin no vintage: a pruned vintage's dates are recomputed by the next
  track record.

``0`` keeps everything of that kind. Everything else is deleted: the vintage's catalog row
first (it is never served again), then its folder, renamed to a temporary name before removal
so that a killed prune leaves only what :mod:`features.tempfiles` sweeps. ``ingest_runs`` rows
keep their (now dangling) vintage id as history. An ``as_of`` read of a period whose vintages
were pruned gets the newest kept vintage issued before it, or, when none is, the earliest kept
vintage holding every source (flagged ``vintage_issued_after_as_of``), as for any date before
the first ingest. Stale temporary entries are removed too. Vintage folders without a catalog row
(a crash between the rename and the catalog insert) are reported, never removed: another
database may catalog them.

**City uploads** (:func:`features.uploads.prune`): the refused files kept with their reports
are capped (``VIGIE_UPLOAD_QUARANTINE_MAX_FILES``, ``VIGIE_UPLOAD_QUARANTINE_MAX_BYTES``; the
oldest dropped with their records, as at every refusal); a replaced upload's own copy
(``uploads/raw``) and record are dropped once the upload that replaced it is settled (the
vintages that read it keep its copy in the raw store; the audit log keeps every upload); the
records of undone uploads beyond the newest ``VIGIE_UPLOAD_QUARANTINE_MAX_FILES`` too.

The audit table is only read. The scheduled ``prune`` job (daily, 04:15) runs the same code.
With ``VIGIE_STORE_URL`` set, the same policy applies to the vintages and runs of that store
(their objects removed; a vintage catalogued outside ``<store>/cube/vintages`` is never touched).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from features import tempfiles
from features.settings import Settings
from features.storage import objects

log = logging.getLogger(__name__)


@dataclass
class Item:
    """A vintage or a forecast run, and why it is kept (no reasons: it is deleted)."""

    id: str
    path: Path | str  # a local folder, or the URL of an object store's prefix
    kind: str = ""
    reasons: list[str] = field(default_factory=list)
    bytes: int = 0

    @property
    def kept(self) -> bool:
        return bool(self.reasons)

    def keep(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)


@dataclass
class Plan:
    """What a prune keeps and deletes."""

    vintages: list[Item]
    runs: list[Item]
    temporary: list[tempfiles.StaleEntry]
    orphans: list[Path]
    retain_vintages: int
    retain_forecast_runs: int
    dry_run: bool = True
    backtests: list[Item] = field(default_factory=list)  # one per target and plan
    stale_backtests: list[Path] = field(default_factory=list)  # files of a gone vintage
    stale_backtest_bytes: int = 0
    uploads: dict = field(default_factory=dict)  # features.uploads.prune's summary

    def deleted(self, items: list[Item]) -> list[Item]:
        return [i for i in items if not i.kept]

    def summary(self) -> dict:
        def side(items: list[Item]) -> dict:
            gone = self.deleted(items)
            return {"total": len(items), "kept": len(items) - len(gone), "deleted": len(gone),
                    "deleted_ids": [i.id for i in gone],
                    "bytes_freed": sum(i.bytes for i in gone)}

        return {"dry_run": self.dry_run,
                "policy": {"retain_vintages": self.retain_vintages,
                           "retain_forecast_runs": self.retain_forecast_runs},
                "vintages": side(self.vintages), "forecast_runs": side(self.runs),
                "backtest_plans": side(self.backtests),
                "backtest_files_of_gone_vintages": {
                    "deleted": len(self.stale_backtests),
                    "bytes_freed": self.stale_backtest_bytes},
                "uploads": self.uploads,
                "temporary_removed": [str(e.path) for e in self.temporary],
                "orphan_vintage_folders": [str(p) for p in self.orphans]}


def _size(path: Path | str, options: dict | None = None) -> int:
    if objects.is_url(path):
        found = objects.open_store(path, options).find()
        return sum(int(i.get("size") or 0) for i in found.values())
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _inside(path: Path | str, folder: Path | str) -> bool:
    if objects.is_url(path) or objects.is_url(folder):
        return str(path).startswith(f"{folder}/")
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def audit_references(engine: sa.Engine) -> tuple[set[str], set[str]]:
    """(vintage ids, run ids) any audit row names (this process's audit journal shipped
    first)."""
    from service.audit import ship_pending
    from service.db import audit_log

    ship_pending(engine)

    with engine.connect() as conn:
        vintage_ids = {r[0] for r in conn.execute(
            sa.select(audit_log.c.vintage_id).where(audit_log.c.vintage_id.isnot(None))
            .distinct())}
        run_ids = {r[0] for r in conn.execute(
            sa.select(audit_log.c.run_id).where(audit_log.c.run_id.isnot(None)).distinct())}
    return vintage_ids, run_ids


def scenario_vintages(settings: Settings) -> dict[str, str]:
    """Vintage id → the first stored scenario result computed on it."""
    from service.scenario_runs import load_result, result_ids, vintage_id_of

    out: dict[str, str] = {}
    for run_id in result_ids(settings):
        try:
            vintage = vintage_id_of(load_result(settings, run_id) or {})
        except (OSError, ValueError, AttributeError):
            log.warning("scenario result %s unreadable: its vintage cannot be kept", run_id)
            continue
        if vintage:
            out.setdefault(vintage, str(run_id))
    return out


def leaderboard_vintage(settings: Settings) -> str | None:
    path = settings.leaderboard_file
    try:
        return json.loads(path.read_text()).get("vintage_id") or None
    except (OSError, ValueError, AttributeError):
        return None


def plan(settings: Settings, *, retain_vintages: int | None = None,
         retain_forecast_runs: int | None = None) -> Plan:
    """What :func:`prune` would keep and delete now (nothing is changed)."""
    from features.store import CubeStore

    keep_v = settings.retain_vintages if retain_vintages is None else retain_vintages
    keep_r = settings.retain_forecast_runs if retain_forecast_runs is None else \
        retain_forecast_runs
    store = CubeStore(settings)
    audit_vintages, audit_runs = audit_references(store.engine)
    # Forecast runs first: the kept ones pin their vintages.
    runs, run_vintage = _plan_runs(settings, keep_r, audit_runs)
    pinned = _pinned_vintages(settings, runs, run_vintage)
    home_vintages = (store.objects.url("cube/vintages") if store.objects.remote
                     else store.root / "vintages")
    items = _plan_vintages(store, keep_v, audit_vintages, pinned, home_vintages)
    for item in [*items, *runs]:
        if not item.kept:
            item.bytes = _size(item.path, settings.store_options)
    known = {Path(i.path).name for i in items}
    grace = settings.tmp_grace_hours * 3600
    orphans = []
    if isinstance(home_vintages, Path) and home_vintages.is_dir():
        orphans = [p for p in sorted(home_vintages.iterdir())
                   if p.is_dir() and not p.name.startswith(".") and p.name not in known
                   and time.time() - p.stat().st_mtime > grace]
    temporary = tempfiles.find_stale(settings.home, settings.tmp_grace_hours)
    backtests, stale = _plan_backtests(settings.backtests_dir, keep_r,
                                       {i.id for i in items if i.kept})
    return Plan(items, runs, temporary, orphans, keep_v, keep_r, backtests=backtests,
                stale_backtests=stale, stale_backtest_bytes=sum(_file_size(p) for p in stale))


def _plan_backtests(root: Path, keep_r: int, kept_vintages: set[str]
                    ) -> tuple[list[Item], list[Path]]:
    """Every backtest plan (``<target>/<plan>``) with why it is kept (the newest ``keep_r``
    of its target by last file written), and the files of kept plans whose vintage (the name's
    part after ``<date>_``) is not kept."""
    if not root.is_dir():
        return [], []
    items, stale = [], []
    for target in sorted(p for p in root.iterdir() if p.is_dir()):
        plans = []
        for folder in (p for p in target.iterdir() if p.is_dir()):
            files = [f for f in folder.glob("*/*.parquet") if f.is_file()]
            newest = max((f.stat().st_mtime for f in files), default=folder.stat().st_mtime)
            plans.append((newest, folder, files))
        plans.sort(key=lambda t: (-t[0], t[1].name))  # newest first
        for rank, (_, folder, files) in enumerate(plans):
            item = Item(f"{target.name}/{folder.name}", folder, target.name)
            if keep_r <= 0:
                item.keep("policy keeps all backtest plans")
            elif rank < keep_r:
                item.keep(f"{rank + 1} newest of {target.name}")
            if item.kept:
                stale += [f for f in files if f.stem[11:] not in kept_vintages]
            else:
                item.bytes = sum(_file_size(f) for f in files)
            items.append(item)
    return items, stale


def _plan_runs(settings: Settings, keep_r: int, audit_runs: set[str]
               ) -> tuple[list[Item], dict[str, str]]:
    """Every forecast run with why it is kept (the newest ``keep_r`` of its kind, a latest
    pointer, an audit row), and run id → the vintage it was made from."""
    from models.store import ForecastStore

    forecasts = ForecastStore.from_settings(settings)
    pointed = set()
    for name in forecasts.objects.names("latest"):
        if not name.endswith(".json"):
            continue
        try:
            pointed.add(json.loads(forecasts.objects.read_bytes(f"latest/{name}"))["run_id"])
        except (OSError, ValueError, KeyError):
            log.warning("forecast pointer %s unreadable", forecasts.objects.url(f"latest/{name}"))
    runs, per_kind = [], {}
    run_vintage: dict[str, str] = {}
    for run in forecasts.list_runs():  # newest first
        meta = run.metadata
        kind = "_".join(str(meta.get(k, "")) for k in ("target", "frequency", "level", "model"))
        item = Item(run.run_id, run.path, kind)
        per_kind[kind] = per_kind.get(kind, 0) + 1
        if keep_r <= 0:
            item.keep("policy keeps all runs")
        elif per_kind[kind] <= keep_r:
            item.keep(f"{per_kind[kind]} newest of {kind}")
        if run.run_id in pointed:
            item.keep("latest pointer (published)")
        if run.run_id in audit_runs:
            item.keep("audit row")
        if meta.get("vintage_id"):
            run_vintage[run.run_id] = str(meta["vintage_id"])
        runs.append(item)
    return runs, run_vintage


def _pinned_vintages(settings: Settings, runs: list[Item], run_vintage: dict[str, str]
                     ) -> dict[str, str]:
    """Vintage id → why it must stay: a kept forecast run, a scenario result or the models'
    leaderboard was made from it."""
    pinned: dict[str, str] = {}
    for item in runs:
        if item.kept and item.id in run_vintage:
            pinned.setdefault(run_vintage[item.id], f"forecast run {item.id}")
    for vintage, result in scenario_vintages(settings).items():
        pinned.setdefault(vintage, f"scenario result {result}")
    board = leaderboard_vintage(settings)
    if board:
        pinned.setdefault(board, "models' leaderboard")
    return pinned


def _plan_vintages(store, keep_v: int, audit_vintages: set[str], pinned: dict[str, str],
                   home_vintages: Path | str) -> list[Item]:
    """Every catalogued vintage with why it is kept (served, the newest ``keep_v``, an audit
    row, a pin, a folder outside this home)."""
    items = []
    for rank, row in enumerate(store.list_vintages()):  # newest first
        item = Item(row["id"], row["path"] if objects.is_url(row["path"]) else Path(row["path"]))
        if rank == 0:
            item.keep("served (newest)")
        if keep_v <= 0:
            item.keep("policy keeps all vintages")
        elif rank < keep_v:
            item.keep(f"{rank + 1} newest")
        if row["id"] in audit_vintages:
            item.keep("audit row")
        if row["id"] in pinned:
            item.keep(pinned[row["id"]])
        if not _inside(item.path, home_vintages):
            item.keep("folder outside this home")
        items.append(item)
    return items


def _discard(path: Path | str, stem: str, options: dict | None = None) -> None:
    """Rename into a temporary name, then remove (a killed prune leaves a sweepable entry).
    On an object store: the objects are removed (the catalog row or pointer went first)."""
    if objects.is_url(path):
        objects.open_store(path, options).remove_tree("")
        return
    doomed = path.parent / tempfiles.temp_name(f"prune-{stem}")
    try:
        path.rename(doomed)
    except FileNotFoundError:  # already gone (another prune)
        return
    tempfiles.remove(doomed)


def prune(settings: Settings | None = None, *, dry_run: bool = False,
          retain_vintages: int | None = None,
          retain_forecast_runs: int | None = None) -> Plan:
    """Apply the retention policy (see the module docstring); return what was done."""
    from features.catalog import vintages
    from features.store import CubeStore

    settings = settings or Settings.from_env()
    with tempfiles.paused() if dry_run else contextlib.nullcontext():
        result = plan(settings, retain_vintages=retain_vintages,
                      retain_forecast_runs=retain_forecast_runs)
    result.dry_run = dry_run
    from features.uploads import prune as prune_uploads

    result.uploads = prune_uploads(settings, dry_run=dry_run)
    if dry_run:
        return result
    engine = CubeStore(settings).engine
    for item in result.deleted(result.runs):
        _discard(item.path, item.id, settings.store_options)
        log.info("pruned forecast run %s (%s)", item.id, item.kind)
    for item in result.deleted(result.vintages):
        with engine.begin() as conn:  # never served again, then the folder goes
            conn.execute(vintages.delete().where(vintages.c.id == item.id))
        _discard(item.path, item.id, settings.store_options)
        log.info("pruned vintage %s", item.id)
    for item in result.deleted(result.backtests):
        _discard(item.path, item.id.replace("/", "-"))
        log.info("pruned backtest plan %s", item.id)
    for path in result.stale_backtests:
        path.unlink(missing_ok=True)
    if result.stale_backtests:
        log.info("pruned %d backtest files of vintages no longer kept",
                 len(result.stale_backtests))
    for entry in result.temporary:
        tempfiles.remove(entry.path)
    for path in result.orphans:
        log.warning("vintage folder %s has no catalog row: left alone", path)
    return result

