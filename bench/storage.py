"""Benchmark the store behind ``VIGIE_STORE_URL``: a local folder against an S3 object store.

The real data directory is ingested once into a local home; the same vintage (every frequency,
its tables and manifest) is then written to an S3 store, and a department-level forecast run
(101 départements × 4 horizons × 23 quantiles) to both. Measured, in the same process and
alternating local and S3, median of ``--repeat``:

* open the current cube cold (process cache emptied: NetCDF read, or downloaded then read),
  daily and weekly;
* open it warm (the process cache, keyed by the immutable vintage: no I/O);
* a forecast read: the latest pointer, the run's metadata and its Hub CSV;
* the same forecast read the API does once per request through a new ``ForecastStore``;
* writing a vintage (upload of every file, manifest last) and a forecast run.

The S3 store is a ``moto`` server started here on 127.0.0.1 (in-process Python: its latency is
moto's request handling, not a network's), or any store given with ``--store-url`` (and
``--store-options`` JSON, credentials from the usual AWS variables). Ratios are S3 / local.

Run: ``python bench/storage.py [--data-dir DIR] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import median_seconds
from features import store as cube_module
from features.ingest import run_ingest
from features.settings import Settings
from features.store import CubeStore
from models.base import QUANTILES
from models.store import ForecastStore


@contextlib.contextmanager
def moto_store():
    """A moto S3 server on a free local port with one bucket; (URL, options)."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="vigie-bench")
        yield f"s3://vigie-bench/{uuid.uuid4().hex[:8]}", {"endpoint_url": endpoint}
    finally:
        server.stop()


def department_run(vintage_id: str) -> tuple[pd.DataFrame, dict]:
    """A Hub frame the size of a weekly département forecast (101 × 4 horizons × 23)."""
    codes = [f"{i:02d}" for i in range(1, 96)] + ["2A", "2B", "971", "972", "973", "974"]
    records = [("2021-12-27", f"{h} wk ahead inc hosp", str(pd.Timestamp("2022-01-01")
                                                          + pd.Timedelta(weeks=h - 1))[:10],
                code, "quantile", q, round(100 * (0.5 + q) * h, 3))
               for code in codes for h in range(1, 5) for q in QUANTILES]
    frame = pd.DataFrame(records, columns=["forecast_date", "target", "target_end_date",
                                           "location", "type", "quantile", "value"])
    meta = {"target": "inc_hosp", "frequency": "weekly", "level": "department",
            "model": "ensemble", "model_version": "1.3", "vintage_id": vintage_id,
            "as_of": "2021-12-27"}
    return frame, meta


def copy_vintage(local: CubeStore, remote: CubeStore) -> str:
    """The local current vintage written again to the remote store; its id there."""
    row = local.current_vintage()
    folder = Path(row["path"])
    datasets = {p.stem: local.open(p.stem) for p in sorted(folder.glob("*.nc"))}
    tables = {p.stem: pd.read_parquet(p) for p in sorted((folder / "tables").glob("*.parquet"))}
    manifest = local.manifest()
    return remote.write_vintage(datasets, tables, {k: v for k, v in manifest.items()
                                                   if k not in ("id", "issued_at",
                                                                "row_counts")})


def measure(stores: dict[str, tuple[CubeStore, ForecastStore, Settings]],
            repeat: int, results: dict) -> None:
    """Each figure for both stores, alternating them."""

    def cold(cube: CubeStore) -> None:
        cube_module._cache.clear()
        cube.open("daily")
        cube.open("weekly")

    def forecast_read(settings: Settings) -> None:
        ForecastStore.from_settings(settings).latest("inc_hosp", "department").read()

    figures = {
        "open cube cold (daily + weekly)": lambda s: cold(s[0]),
        "open cube warm (cached)": lambda s: s[0].open("daily"),
        "forecast read (pointer, metadata, CSV)": lambda s: s[1].latest(
            "inc_hosp", "department").read(),
        "forecast read, new store per request": lambda s: forecast_read(s[2]),
    }
    for name, fn in figures.items():
        for store in stores.values():
            fn(store)  # warm-up
        for kind, store in stores.items():
            results.setdefault(name, {})[kind] = median_seconds(lambda fn=fn, s=store: fn(s),
                                                             repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Settings.from_env().data_dir)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--store-url", default="", help="an S3 URL instead of a moto server")
    parser.add_argument("--store-options", default="{}", help="JSON options of that store")
    args = parser.parse_args()

    server = (contextlib.nullcontext((args.store_url, json.loads(args.store_options)))
              if args.store_url else moto_store())
    with tempfile.TemporaryDirectory() as base, server as (url, options):
        local = Settings.from_env(home=f"{base}/local", data_dir=str(args.data_dir),
                                  database_url=f"sqlite:///{base}/local/vigie.sqlite")
        remote = Settings.from_env(home=f"{base}/s3", data_dir=str(args.data_dir),
                                   database_url=f"sqlite:///{base}/s3/vigie.sqlite",
                                   store_url=url, store_options=options)
        started = time.perf_counter()
        report = run_ingest(local)
        print(f"ingest of {args.data_dir} (local): {time.perf_counter() - started:.1f} s, "
              f"{report.outcome}")
        lcube, rcube = CubeStore(local), CubeStore(remote)
        results: dict[str, dict[str, float]] = {}
        write = {}
        started = time.perf_counter()
        rid = copy_vintage(lcube, rcube)
        write["s3"] = time.perf_counter() - started
        started = time.perf_counter()
        copy_vintage(lcube, lcube)
        write["local"] = time.perf_counter() - started
        results["write a vintage (once)"] = write
        frame, meta = department_run(rid)
        runs = {"local": ForecastStore.from_settings(local),
                "s3": ForecastStore.from_settings(remote)}
        results["save a forecast run"] = {
            kind: median_seconds(lambda s=store: s.save(frame, meta), args.repeat)
            for kind, store in runs.items()}
        size = sum(p.stat().st_size for p in Path(lcube.current_vintage()["path"]).rglob("*")
                   if p.is_file())
        print(f"vintage {rid}: {size / 2**20:.1f} MiB; forecast run: {len(frame)} rows; "
              f"S3: {url} (median of {args.repeat})")
        measure({"local": (lcube, runs["local"], local),
                     "s3": (rcube, runs["s3"], remote)}, args.repeat, results)
        pd.testing.assert_frame_equal(runs["local"].latest("inc_hosp", "department").read(),
                                      runs["s3"].latest("inc_hosp", "department").read())
        assert np.array_equal(lcube.open("daily")["inc_hosp"].values,
                              rcube.open("daily")["inc_hosp"].values, equal_nan=True)
    print(f"{'':42} {'local':>10} {'S3':>10} {'S3/local':>9}")
    for name, pair in results.items():
        ratio = pair["s3"] / pair["local"] if pair["local"] else float("nan")
        print(f"{name:42} {pair['local'] * 1000:8.1f}ms {pair['s3'] * 1000:8.1f}ms "
              f"{ratio:8.1f}x")


if __name__ == "__main__":
    main()
