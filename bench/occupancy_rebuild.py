"""Measure the error of rebuilt bed occupancy against the stocks SPF published.

Hides part of the published stocks, rebuilds them from flows with the method the cube uses
(:mod:`features.occupancy`), and compares with what SPF published on the hidden days.

Experiments:
  A. 100 départements, published 2020-08-01..2021-01-13: the last 12 weeks hidden (forward
     rebuild 1..84 days away from the nearest anchor), errors by distance to the anchor.
  B. Bourgogne-Franche-Comté (8 départements, published 2020-03-18..2021-02-01): only the
     2020-H2 window visible, as for every other département; rebuild backwards to March 2020
     and forwards to February 2021.

Run: ``python bench/occupancy_rebuild.py [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from features import occupancy
from features.cube import _pivot
from features.settings import Settings
from features.sources import spf_bed_occupancy, spf_hospital_flows
from features.sources.base import ParseContext
from features.sources.insee_territories import load_territories


def load(data_dir: Path):
    territories, _ = load_territories(data_dir)
    ctx = ParseContext(territories)
    flows = spf_hospital_flows.SOURCE
    stock_src, bfc_src = spf_bed_occupancy.SOURCES
    tidy_flows = flows.load(flows.fetch(data_dir), ctx).frame
    stocks = stock_src.load(stock_src.fetch(data_dir), ctx).frame
    bfc = bfc_src.load(bfc_src.fetch(data_dir), ctx).frame
    return tidy_flows, stocks, bfc


def arrays(tidy: pd.DataFrame, stocks: pd.DataFrame, deps: list[str]):
    dates = pd.date_range(tidy["date"].min(), tidy["date"].max(), freq="D")
    def pivot(frame: pd.DataFrame, name: str) -> np.ndarray:
        return _pivot(frame[frame["indicator"] == name], deps, dates)

    a = {n: pivot(tidy, n) for n in ("inc_hosp", "inc_discharge", "inc_death", "inc_icu")}
    a["hosp"] = pivot(stocks, "hosp")
    a["icu"] = pivot(stocks, "icu")
    return dates, a


def run_experiment(name: str, a: dict, dates: pd.DatetimeIndex, hide: np.ndarray,
                   anchor_dist: np.ndarray) -> list[dict]:
    rows = []
    net = a["inc_hosp"] - a["inc_discharge"] - a["inc_death"]
    for indicator, method, inputs in (
        ("hosp", occupancy.rebuild_by_accounting,
         {"net_flow": net, "admissions": a["inc_hosp"]}),
        ("hosp (convolution, for comparison)", occupancy.rebuild_by_convolution,
         {"admissions": a["inc_hosp"]}),
        ("icu", occupancy.rebuild_by_convolution, {"admissions": a["inc_icu"]}),
    ):
        published = a["hosp" if indicator.startswith("hosp") else "icu"]
        for lo, hi in ((1, 7), (8, 28), (29, 90), (91, 400)):
            mask = hide & (anchor_dist >= lo) & (anchor_dist <= hi) & ~np.isnan(published)
            if mask.sum() == 0:
                continue
            res = _eval_subset(method, published, hide, mask, inputs)
            rows.append({"experiment": name, "indicator": indicator,
                         "days from anchor": f"{lo}-{hi}", **res})
    return rows


def _eval_subset(method, published, hide, mask, inputs) -> dict:
    visible = np.where(hide, np.nan, published)
    rebuilt = method(published=visible, **inputs).values
    truth, guess = published[mask], rebuilt[mask]
    err = guess - truth
    return {"cells": int(mask.sum()), "MAE (beds)": round(float(np.mean(np.abs(err))), 2),
            "mean error (beds)": round(float(np.mean(err)), 2),
            "MAPE (%)": round(float(100 * np.abs(err).sum() / np.abs(truth).sum()), 1)}


def distance_to_visible(visible: np.ndarray) -> np.ndarray:
    n = visible.shape[1]
    idx = np.arange(n)
    out = np.full(visible.shape, np.inf)
    for i in range(visible.shape[0]):
        known = np.flatnonzero(visible[i])
        if known.size:
            pos = np.searchsorted(known, idx)
            left = known[np.clip(pos - 1, 0, known.size - 1)]
            right = known[np.clip(pos, 0, known.size - 1)]
            out[i] = np.minimum(np.abs(idx - left), np.abs(right - idx))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Settings.from_env().data_dir)
    args = parser.parse_args()
    flows, stocks, bfc = load(args.data_dir)
    rows = []
    # A: 100 départements, hide the last 84 published days.
    deps = sorted(set(stocks["territory"]))
    dates, a = arrays(flows, stocks, deps)
    pub = ~np.isnan(a["hosp"])
    last = np.where(pub.any(axis=0))[0][-1]
    hide = np.zeros_like(pub)
    hide[:, last - 83: last + 1] = True
    rows += run_experiment("A: 100 deps, last 12 weeks of 2020-H2 hidden", a, dates, hide,
                           distance_to_visible(pub & ~hide))
    # B: BFC with only the 2020-H2 window visible.
    bfc_deps = sorted(set(bfc["territory"]))
    dates, b = arrays(flows, bfc, bfc_deps)
    window = (dates >= "2020-08-01") & (dates <= "2021-01-13")
    pub = ~np.isnan(b["hosp"])
    hide = pub & ~window[None, :]
    rows += run_experiment("B: BFC, outside 2020-08-01..2021-01-13 hidden", b, dates, hide,
                           distance_to_visible(pub & ~hide))
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
