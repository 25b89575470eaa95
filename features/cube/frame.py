"""The arrays of one frequency under construction (:class:`Frame`): the merge of the sources'
tidy rows, one (territory, date) array per indicator, and the dataset they become.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from features.cube.coverage import COVERAGE_ATTR, TotalsCoverage
from features.indicators import IndicatorSpec
from features.sources.contract import SourceResult
from features.territories import Territories

DATE_FREQ = {"daily": "D", "weekly": "W-SAT", "quarterly": "QE", "yearly": "YS"}
#: Levels the région and France totals are summed from. Their own values are published, or,
#: for an indicator communes report and they do not publish, summed from their communes.
BASE_LEVELS = ("department", "collectivity")


def merge_results(results: Iterable[SourceResult]
                  ) -> tuple[pd.DataFrame, dict[str, IndicatorSpec]]:
    """Concatenate tidy frames, first source winning on (territory, date, indicator)."""
    frames, specs = [], {}
    for result in results:
        frames.append(result.frame)
        for spec in result.indicators:
            specs.setdefault(spec.name, spec)
    if not frames:
        return pd.DataFrame(columns=["territory", "date", "indicator", "value"]), specs
    tidy = pd.concat(frames, ignore_index=True)
    tidy = tidy.drop_duplicates(["territory", "date", "indicator"], keep="first")
    tidy["date"] = tidy["date"].astype("datetime64[ns]")
    present = set(pd.unique(tidy["indicator"]))
    return tidy, {name: spec for name, spec in specs.items() if name in present}


def _pivot(rows: pd.DataFrame, territories: list[str], dates: pd.DatetimeIndex) -> np.ndarray:
    """Tidy rows of one indicator → array ``(territory, date)``, NaN where absent."""
    out = np.full((len(territories), len(dates)), np.nan)
    t_idx = pd.Index(territories).get_indexer(rows["territory"])
    d_idx = dates.get_indexer(rows["date"])
    ok = (t_idx >= 0) & (d_idx >= 0)
    out[t_idx[ok], d_idx[ok]] = rows["value"].to_numpy()[ok]
    return out


class Frame:
    """The arrays of one frequency under construction: shared territory and date axes."""

    def __init__(self, codes: list[str], dates: pd.DatetimeIndex, territories: Territories):
        self.codes = codes
        self.dates = dates
        self.territories = territories
        self.meta = territories.table.loc[codes]
        self.arrays: dict[str, np.ndarray] = {}
        self.specs: dict[str, IndicatorSpec] = {}
        self.coverage: dict[str, TotalsCoverage] = {}
        self.index = {code: i for i, code in enumerate(codes)}

    @functools.cached_property
    def date_labels(self) -> list[str]:
        """ISO dates of the date axis (coverage keys)."""
        return list(self.dates.strftime("%Y-%m-%d"))

    def rows_at(self, levels: Iterable[str]) -> np.ndarray:
        return np.flatnonzero(self.meta["level"].isin(list(levels)).to_numpy())


def frequency_frame(tidy: pd.DataFrame, specs: dict[str, IndicatorSpec], frequency: str,
                    territories: Territories, extra_codes: Iterable[str] = ()) -> Frame:
    """The frame of one frequency: every territory of ``tidy`` (and ``extra_codes``) with its
    ancestors, every date of the frequency between the first and the last, one array per
    indicator of ``specs``."""
    codes = territories.closure([*pd.unique(tidy["territory"]), *extra_codes])
    dates = pd.date_range(tidy["date"].min(), tidy["date"].max(), freq=DATE_FREQ[frequency])
    frame = Frame(codes, dates.normalize(), territories)
    for name, rows in tidy.groupby("indicator", sort=True):
        if name in specs:
            frame.arrays[name] = _pivot(rows, codes, frame.dates)
            frame.specs[name] = specs[name]
    return frame


def to_dataset(frame: Frame, frequency: str) -> xr.Dataset:
    """The frame as the vintage's dataset of ``frequency``: one (territory, date) variable per
    indicator with its spec's attrs (and its totals' coverage), the territories' level,
    parent, group (a commune's EPCI), name and population as coordinates."""
    meta = frame.meta
    group = meta["group"] if "group" in meta else pd.Series("", index=meta.index)
    data_vars = {}
    for name in sorted(frame.arrays):
        if name not in frame.specs:
            continue
        attrs = frame.specs[name].attrs()
        if name in frame.coverage:
            attrs[COVERAGE_ATTR] = frame.coverage[name].to_attr()
        data_vars[name] = (("territory", "date"), frame.arrays[name], attrs)
    return xr.Dataset(
        data_vars,
        coords={
            "territory": ("territory", np.array(frame.codes, dtype=object)),
            "date": ("date", frame.dates.values.astype("datetime64[ns]")),
            "territory_level": ("territory", meta["level"].to_numpy(dtype=object)),
            "territory_parent": ("territory", meta["parent"].to_numpy(dtype=object)),
            "territory_group": ("territory", group.fillna("").to_numpy(dtype=object)),
            "territory_name": ("territory", meta["name"].to_numpy(dtype=object)),
            "population": ("territory", meta["population"].to_numpy(dtype=float),
                           {"units": "inhabitants", "source": "INSEE, legal population 2020"}),
        },
        attrs={"frequency": frequency},
    )
