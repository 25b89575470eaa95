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
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features import tempfiles
from features.storage.atomic import atomic_dir, atomic_write_json
from models.targets import HUB_COLUMNS

#: Temporary entries of this store, relative to its root (:func:`features.tempfiles.sweep`).
TEMP_LOCATIONS = (("runs", ".tmp-*"), ("latest", "*.tmp"))


@dataclass(frozen=True)
class ForecastRun:
    """A stored forecast run."""

    run_id: str
    path: Path
    metadata: dict[str, Any]

    def read(self) -> pd.DataFrame:
        """The Hub rows of the run (``location`` as string codes)."""
        return pd.read_csv(self.path / "forecast.csv", dtype={"location": str})


class ForecastStore:
    """Write and read forecast runs.

    Parameters
    ----------
    root:
        ``Settings.forecasts_dir``.
    tmp_grace_hours:
        Age after which a temporary entry whose writer cannot be checked is removed.
    """

    def __init__(self, root: Path,
                 tmp_grace_hours: float = tempfiles.DEFAULT_GRACE_HOURS) -> None:
        self.root = Path(root)
        tempfiles.sweep_once(self.root, tmp_grace_hours, TEMP_LOCATIONS)

    @classmethod
    def from_settings(cls, settings: Any = None) -> ForecastStore:
        if settings is None:
            from features.settings import Settings

            settings = Settings.from_env()
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
        runs = self.root / "runs"
        pointer = self.root / "latest" / f"{self._kind(meta)}.json"
        # A job that lost its run publishes nothing: neither the run nor the pointer to it.
        with atomic_dir(runs / run_id, publish=True,
                        after=lambda: atomic_write_json(pointer, {"run_id": run_id})) as tmp:
            rows[HUB_COLUMNS].to_csv(tmp / "forecast.csv", index=False)
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, default=str))
        return ForecastRun(run_id, runs / run_id, meta)

    @staticmethod
    def _kind(meta: dict[str, Any]) -> str:
        return "_".join(str(meta[k]) for k in ("target", "frequency", "level", "model"))

    def get(self, run_id: str) -> ForecastRun:
        path = self.root / "runs" / run_id
        if not (path / "metadata.json").exists():
            raise KeyError(f"no forecast run {run_id!r} in {self.root}")
        return ForecastRun(run_id, path, json.loads((path / "metadata.json").read_text()))

    def list_runs(self) -> list[ForecastRun]:
        """Every complete run, newest first."""
        runs = self.root / "runs"
        if not runs.exists():
            return []
        ids = sorted((p.name for p in runs.iterdir() if not p.name.startswith(".")), reverse=True)
        return [self.get(i) for i in ids]

    def latest(
        self, target: str, level: str, model: str = "ensemble", frequency: str = "weekly"
    ) -> ForecastRun | None:
        """Newest run of that target, level and model (None when there is none)."""
        kind = self._kind(
            {"target": target, "frequency": frequency, "level": level, "model": model}
        )
        pointer = self.root / "latest" / f"{kind}.json"
        if not pointer.exists():
            return None
        return self.get(json.loads(pointer.read_text())["run_id"])
