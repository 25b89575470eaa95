"""The differencing attack (issue 13): everything the public API publishes about the real cube,
solved as one linear system, must give back no hidden count.

The attacker holds no token. It reads every count the public can read (all territory levels,
daily and weekly, CSV; JSON and the French-Excel CSV are checked to hide exactly the same
cells), the rates and ratios computed from them (/data, /risk), the forecasts and the alerts,
and writes down every equation those answers satisfy, from the documented construction of the
cube (docs/CUBE_CONTRACT.md, docs/DISCLOSURE.md):

* hierarchy: a parent = the sum of its children reporting the indicator, at every date;
* time: a week of a flow = the sum of its seven days; a week of a stock = its Saturday;
* rates: 7-day incidence × population / 100,000 = the 7-day sum of cases; positivity =
  100 × 7-day cases / 7-day tests; vaccination coverage × population / 100 = persons
  vaccinated; variant share s: present × (100 − s) = absent × s; growth rate g:
  ``S_t = exp(7 g) S_{t-7}`` (7-day sums of its basis series); R(t): its credible interval gives
  the posterior shape, 1 + the 7-day sum of the basis series;
* /risk: ICU occupancy × adult ICU beds / 100 = the région's ICU patients.

Unknowns are the cells published as suppressed. The test fails when a simple difference
(an equation with one unknown) or a small sum (the hidden members of a published total adding
up to less than the threshold) gives something back, or when any unknown is determined by the
whole system (:func:`features.disclosure.determined_unknowns`, checked against brute force in
``tests/test_disclosure.py``). Before the secondary suppression of ``features.disclosure``,
this attack recovered thousands of hidden daily and weekly counts (see docs/DISCLOSURE.md).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import optimize, special

from features.disclosure import determined_unknowns

THRESHOLD = 10
#: Counts read over the whole cube; everything else over WINDOW (a whole number of weeks,
#: published and rebuilt stocks, a quiet and a busy period), to keep the test in seconds.
FULL_RANGE = ("inc_hosp", "inc_icu", "inc_death", "inc_discharge", "hosp", "icu", "inc_cases",
              "inc_tests")
WINDOW = {"start": "2020-09-27", "end": "2021-01-30"}
#: Variant screening and the incidence estimated from it start in 2021.
SCREENING_WINDOW = {"start": "2021-05-30", "end": "2021-07-31"}
SUMMED = ("country", "region", "department", "collectivity")
EPIDEMIC_BASIS = {1: "inc_cases", 2: "inc_hosp"}


@dataclass
class Table:
    """One public answer as arrays (territory × date): value (NaN when absent or suppressed),
    present (a row exists), hidden (published as suppressed)."""

    codes: list[str]
    dates: pd.DatetimeIndex
    value: np.ndarray
    present: np.ndarray
    hidden: np.ndarray
    uid: np.ndarray  # unknown id of each hidden cell, -1 elsewhere

    def row(self, code: str) -> int:
        """Row of a territory that appears in the answer, else -1."""
        r = self.position.get(code, -1)
        return r if r >= 0 and self.present[r].any() else -1

    @cached_property
    def position(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.codes)}


class Attacker:
    """Reads the public API and collects equations ``A x + b = 0`` over the hidden cells."""

    def __init__(self, client):
        self.client = client
        self.territories = self._pages("/api/v1/territories")
        self.by_code = {t["code"]: t for t in self.territories}
        self.indicators = self._pages("/api/v1/indicators")
        self.tables: dict[tuple[str, str], Table] = {}
        self.unknowns: list[tuple[str, str, str, str]] = []
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.coefs: list[np.ndarray] = []
        self.consts: list[np.ndarray] = []
        self.kinds: list[np.ndarray] = []
        self.n_eq = 0

    def _pages(self, url: str) -> list[dict]:
        out, page = [], 1
        while True:
            body = self.client.get(url, query_string={"per_page": 1000, "page": page}).get_json()
            out += body["items"]
            if page >= body["pagination"]["pages"]:
                return out
            page += 1

    # ------------------------------------------------------------------ reading
    def entry(self, name: str, frequency: str) -> dict | None:
        return next((e for e in self.indicators
                     if e["name"] == name and e["frequency"] == frequency), None)

    def table(self, name: str, frequency: str) -> Table | None:
        key = (name, frequency)
        if key in self.tables:
            return self.tables[key]
        if self.entry(name, frequency) is None:
            return None
        window = {} if name in FULL_RANGE or frequency == "yearly" else \
            SCREENING_WINDOW if name.startswith(("screened_", "variant_share_",
                                                 "incidence_rate_7d_estimated")) else WINDOW
        r = self.client.get("/api/v1/data", query_string={
            "indicator": name, "frequency": frequency, "format": "csv", **window})
        assert r.status_code == 200, r.get_data(as_text=True)[:300]
        frame = pd.read_csv(io.BytesIO(r.data), dtype={"territory": str})
        codes = [t["code"] for t in self.territories]
        dates = self.axis(frequency)
        shape = (len(codes), len(dates))
        ti = pd.Index(codes).get_indexer(frame["territory"])
        di = dates.get_indexer(pd.to_datetime(frame["date"]))
        value = np.full(shape, np.nan)
        present = np.zeros(shape, dtype=bool)
        hidden = np.zeros(shape, dtype=bool)
        value[ti, di] = frame["value"].to_numpy(float)
        hidden[ti, di] = frame["suppressed"].to_numpy().astype(int) == 1
        # A row without a value that is not suppressed (an incomplete total) is unpublished.
        present[ti, di] = hidden[ti, di] | ~np.isnan(value[ti, di])
        uid = np.full(shape, -1)
        cells = np.flatnonzero(hidden.ravel())
        uid.ravel()[cells] = len(self.unknowns) + np.arange(len(cells))
        for c in cells:
            self.unknowns.append((name, frequency, codes[c // shape[1]],
                                  str(dates[c % shape[1]].date())))
        table = Table(codes, dates, value, present, hidden, uid)
        self.tables[key] = table
        return table

    def axis(self, frequency: str) -> pd.DatetimeIndex:
        """One date axis per frequency, so that answers line up cell for cell."""
        entries = [e for e in self.indicators if e["frequency"] == frequency and e["first_date"]]
        start = min(e["first_date"] for e in entries)
        end = max(e["last_date"] for e in entries)
        freq = {"daily": "D", "weekly": "W-SAT", "quarterly": "QE", "yearly": "YS"}[frequency]
        return pd.date_range(start, end, freq=freq)

    # ------------------------------------------------------------------ equations
    def add(self, terms: list[tuple[Table, np.ndarray, np.ndarray, np.ndarray | float]],
            kind: str, rhs: np.ndarray | float = 0.0) -> None:
        """Equations ``Σ coef × cell = rhs``, one per position of the index arrays; kept
        where every cell is published (value or suppressed)."""
        n = len(terms[0][1])
        valid = np.ones(n, dtype=bool)
        for tab, r, c, _ in terms:
            ok = (r >= 0) & (c >= 0)
            valid &= ok
            valid[ok] &= tab.present[r[ok], c[ok]]
        rhs = np.broadcast_to(np.asarray(rhs, dtype=float), (n,))
        valid &= np.isfinite(rhs)
        idx = np.flatnonzero(valid)
        if not len(idx):
            return
        eq = self.n_eq + np.arange(len(idx))
        const = -rhs[idx].copy()
        for tab, r, c, coef in terms:
            coef = np.broadcast_to(np.asarray(coef, dtype=float), (n,))[idx]
            u = tab.uid[r[idx], c[idx]]
            unknown = u >= 0
            self.rows.append(eq[unknown])
            self.cols.append(u[unknown])
            self.coefs.append(coef[unknown])
            const += np.where(unknown, 0.0, coef * np.nan_to_num(tab.value[r[idx], c[idx]]))
        self.consts.append(const)
        self.kinds.append(np.full(len(idx), kind, dtype=object))
        self.n_eq += len(idx)

    def hierarchy(self, name: str, frequency: str) -> None:
        tab = self.table(name, frequency)
        children: dict[str, list[str]] = {}
        for t in self.territories:
            if t["level"] in SUMMED and t["level"] != "country" \
                    and self.by_code.get(t["parent"], {}).get("level") in SUMMED:
                children.setdefault(t["parent"], []).append(t["code"])
        cols = np.arange(len(tab.dates))
        for parent, kids in children.items():
            p = tab.row(parent)
            rows = [tab.row(k) for k in kids if tab.row(k) >= 0]
            if p < 0 or not rows:
                continue
            together = tab.present[p] & tab.present[rows].all(axis=0)
            if not _holds_where_seen(tab.value[p], tab.value[rows].sum(axis=0), together):
                continue  # not a sum (a published total): no equation
            c = cols[together]
            terms = [(tab, np.full(len(c), p), c, 1.0)]
            terms += [(tab, np.full(len(c), r), c, -1.0) for r in rows]
            self.add(terms, "hierarchy")

    def weeks(self, name: str) -> None:
        daily, weekly = self.table(name, "daily"), self.table(name, "weekly")
        if daily is None or weekly is None:
            return
        stock = "value on the Saturday" in self.entry(name, "weekly")["description"]
        for code in weekly.codes:
            w_row, d_row = weekly.row(code), daily.row(code)
            if d_row < 0:
                continue
            w = np.arange(len(weekly.dates))
            days = [daily.dates.get_indexer(weekly.dates - pd.Timedelta(days=k))
                    for k in (range(1) if stock else range(7))]
            ok = weekly.present[w_row] & np.all([d >= 0 for d in days], axis=0)
            summed = np.sum([np.where(d >= 0, daily.value[d_row, d], np.nan) for d in days],
                            axis=0)
            ok[ok] &= np.all([daily.present[d_row, d[ok]] for d in days], axis=0)
            if not _holds_where_seen(weekly.value[w_row], summed, ok):
                continue
            terms = [(weekly, np.full(len(w), w_row), w, 1.0)]
            terms += [(daily, np.full(len(w), d_row), d, -1.0) for d in days]
            self.add(terms, "saturday" if stock else "week")

    def window(self, tab: Table, r: int, end: np.ndarray, days: int, coef: np.ndarray | float
               ) -> list[tuple[Table, np.ndarray, np.ndarray, np.ndarray | float]]:
        """Terms of ``coef × Σ`` the ``days`` days ending at ``end`` of row ``r``."""
        return [(tab, np.full(len(end), r), np.where(end - k >= 0, end - k, -1), coef)
                for k in range(days)]

    def rate_of_count(self, rate_name: str, count_name: str, scale: float, days: int,
                      kind: str, pop: dict) -> None:
        """Equations of a daily rate of a count: ``rate × population / scale`` = the count
        summed over the ``days`` days ending on the rate's date (incidence: 7 days per 100,000;
        vaccination coverage: that day, per 100)."""
        rate, count = self.table(rate_name, "daily"), self.table(count_name, "daily")
        if rate is None or count is None:
            return
        for code in rate.codes:
            r, rc = rate.row(code), count.row(code)
            if rc < 0 or not pop.get(code):
                continue
            t = np.flatnonzero(rate.present[r] & ~rate.hidden[r])
            end = count.dates.get_indexer(rate.dates[t])
            self.add(self.window(count, rc, end, days, 1.0), kind,
                     rate.value[r, t] * pop[code] / scale)

    def rates(self) -> None:
        """Equations from rates and ratios on counts (see the module docstring)."""
        pop = {t["code"]: t["population"] for t in self.territories}
        cases, tests = self.table("inc_cases", "daily"), self.table("inc_tests", "daily")
        self.rate_of_count("incidence_rate_7d", "inc_cases", 1e5, 7, "incidence", pop)
        positivity = self.table("positivity_rate_7d", "daily")
        if positivity is not None and cases is not None and tests is not None:
            for code in positivity.codes:
                r, rc, rt = positivity.row(code), cases.row(code), tests.row(code)
                if rc < 0 or rt < 0:
                    continue
                t = np.flatnonzero(positivity.present[r] & ~positivity.hidden[r])
                share = positivity.value[r, t] / 100
                self.add(self.window(cases, rc, cases.dates.get_indexer(positivity.dates[t]),
                                     7, 1.0)
                         + self.window(tests, rt, tests.dates.get_indexer(positivity.dates[t]),
                                       7, -share), "positivity")
        self.rate_of_count("vaccination_coverage_dose1", "vaccinated_dose1", 100, 1, "coverage",
                           pop)
        self.estimated_incidence(pop)
        for entry in self.indicators:
            name = entry["name"]
            if not name.startswith("variant_share_") or entry["frequency"] != "daily":
                continue
            m = name[len("variant_share_"):]
            share = self.table(name, "daily")
            present = self.table(f"screened_{m}_present", "daily")
            absent = self.table(f"screened_{m}_absent", "daily")
            if present is None or absent is None:
                continue
            for code in share.codes:
                r, rp, ra = share.row(code), present.row(code), absent.row(code)
                if rp < 0 or ra < 0:
                    continue
                t = np.flatnonzero(share.present[r] & ~share.hidden[r])
                s = share.value[r, t]
                self.add([(present, np.full(len(t), rp), present.dates.get_indexer(
                    share.dates[t]), 100 - s),
                          (absent, np.full(len(t), ra), absent.dates.get_indexer(share.dates[t]),
                           -s)], "variant_share")

    def estimated_incidence(self, pop: dict[str, float]) -> None:
        """A département's estimate × population / 100,000 = its screened positive tests ×
        its région's positive persons / positive tests over the same 7 days."""
        estimate = self.table("incidence_rate_7d_estimated", "daily")
        tests = self.table("screened_positive_tests", "daily")
        cases = self.table("inc_cases", "daily")
        if estimate is None or tests is None or cases is None:
            return
        hidden = np.concatenate([np.zeros((len(cases.codes), 1)),
                                 np.cumsum(cases.hidden | ~cases.present, axis=1)], axis=1)
        filled = np.concatenate([np.zeros((len(cases.codes), 1)),
                                 np.cumsum(np.nan_to_num(cases.value), axis=1)], axis=1)
        for code in estimate.codes:
            r, rt = estimate.row(code), tests.row(code)
            region = self.by_code.get(code, {}).get("parent", "")
            rr, rc = tests.row(region), cases.row(region)
            if r < 0 or rt < 0 or rr < 0 or rc < 0 or not pop.get(code):
                continue
            t = np.flatnonzero(estimate.present[r] & ~estimate.hidden[r])
            c = tests.dates.get_indexer(estimate.dates[t])
            e = cases.dates.get_indexer(estimate.dates[t])
            ok = (c >= 0) & (e >= 6)
            t, c, e = t[ok], c[ok], e[ok]
            known = (hidden[rc, e + 1] - hidden[rc, e - 6] == 0) & tests.present[rr, c] \
                & ~tests.hidden[rr, c]
            t, c, e = t[known], c[known], e[known]
            ratio = (filled[rc, e + 1] - filled[rc, e - 6]) / tests.value[rr, c]
            self.add([(tests, np.full(len(t), rt), c, ratio)], "estimate",
                     estimate.value[r, t] * pop[code] / 1e5)

    def epidemic(self) -> None:
        """Growth rate and R(t) give 7-day sums of their basis series."""
        basis = self.table("epidemic_basis", "daily")
        growth = self.table("growth_rate", "daily")
        lower, upper = self.table("rt_lower", "daily"), self.table("rt_upper", "daily")
        if basis is None:
            return
        for code in basis.codes:
            b = basis.row(code)
            for kind, series_name in EPIDEMIC_BASIS.items():
                series = self.table(series_name, "daily")
                rs = series.row(code) if series is not None else -1
                if rs < 0:
                    continue
                on = basis.present[b] & (basis.value[b] == kind)
                if growth is not None and growth.row(code) >= 0:
                    g = growth.row(code)
                    t = np.flatnonzero(on & growth.present[g] & ~growth.hidden[g])
                    end = series.dates.get_indexer(growth.dates[t])
                    ratio = np.exp(7 * growth.value[g, t])
                    self.add(self.window(series, rs, end, 7, 1.0)
                             + self.window(series, rs, end - 7, 7, -ratio), "growth")
                if lower is not None and upper is not None and lower.row(code) >= 0:
                    lo, up = lower.row(code), upper.row(code)
                    t = np.flatnonzero(on & lower.present[lo] & ~lower.hidden[lo]
                                       & upper.present[up] & ~upper.hidden[up])
                    # Only windows holding a hidden day say something new.
                    hidden = np.concatenate([[0], np.cumsum(series.hidden[rs])])
                    end = series.dates.get_indexer(lower.dates[t])
                    t = t[(end >= 6) & (hidden[end + 1] - hidden[np.maximum(end - 6, 0)] > 0)]
                    events = np.array([_events_from_interval(lower.value[lo, j],
                                                             upper.value[up, j]) for j in t])
                    end = series.dates.get_indexer(lower.dates[t])
                    self.add(self.window(series, rs, end, 7, 1.0), "rt", events)

    def risk(self) -> None:
        """/risk of every région and France: ICU occupancy × beds / 100 = ICU patients."""
        icu = self.table("icu", "daily")
        for t in self.territories:
            if t["level"] not in ("region", "country"):
                continue
            body = self.client.get(f"/api/v1/risk/{t['code']}",
                                   query_string={"per_page": 1000, **WINDOW}).get_json()
            assert body["pagination"]["pages"] == 1
            for item in body.get("items", []):
                inputs = item["inputs"]
                source = item["inputs_from"].get("icu_occupancy") or t["code"]
                r = icu.row(source)
                c = icu.dates.get_indexer([pd.Timestamp(item["date"])])
                if r < 0 or c[0] < 0:
                    continue
                for value in (inputs.get("icu"),
                              None if inputs.get("icu_occupancy") is None
                              or inputs.get("icu_beds_adult") is None
                              else inputs["icu_occupancy"] * inputs["icu_beds_adult"] / 100):
                    if value is not None:
                        self.add([(icu, np.array([r]), c, 1.0)], "risk", value)

    def matrix(self) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, dtype=int)
        a = sp.csr_matrix((np.concatenate(self.coefs), (rows, np.concatenate(self.cols))),
                          shape=(self.n_eq, len(self.unknowns)))
        return a, np.concatenate(self.consts), np.concatenate(self.kinds)


def _holds_where_seen(total: np.ndarray, summed: np.ndarray, together: np.ndarray) -> bool:
    """The attacker's check that a relation is a sum: it holds wherever every cell of it is
    visible (and is seen at least once)."""
    seen = together & ~np.isnan(total) & ~np.isnan(summed)
    return bool(seen.any()) and bool(
        (np.abs(total[seen] - summed[seen]) <= 1e-6 * np.maximum(1, np.abs(total[seen]))).all())


def _events_from_interval(lower: float, upper: float) -> float:
    """The 7-day sum of events behind an R(t) posterior: shape = 1 + events, and the ratio of
    the 97.5 % and 2.5 % quantiles depends on the shape only. NaN when not recoverable."""
    if not (lower > 0 and upper > lower):
        return math.nan

    def gap(log_a: float) -> float:
        a = math.exp(log_a)
        return math.log(special.gammaincinv(a, 0.975) / special.gammaincinv(a, 0.025)) \
            - math.log(upper / lower)

    try:
        shape = math.exp(optimize.brentq(gap, math.log(1.0), math.log(1e7)))
    except ValueError:
        return math.nan
    events = shape - 1
    return float(round(events)) if abs(events - round(events)) < 0.05 else math.nan


@pytest.fixture(scope="module")
def attack(api_settings):
    """Every public answer read once (the API on the real cube), and the equations they
    satisfy."""
    from service.app import create_app

    app = create_app({"TESTING": True, "SETTINGS": api_settings, "RATELIMIT_ENABLED": False})
    attacker = Attacker(app.test_client())
    counts = sorted({e["name"] for e in attacker.indicators if e["count"]
                     and e["aggregation"] == "sum" and e["frequency"] in ("daily", "weekly")})
    for name in counts:
        for frequency in ("daily", "weekly"):
            if attacker.table(name, frequency) is not None:
                attacker.hierarchy(name, frequency)
        attacker.weeks(name)
    attacker.rates()
    attacker.epidemic()
    attacker.risk()
    return attacker, app


def _describe(attacker: Attacker, ids: np.ndarray, limit: int = 5) -> str:
    return "; ".join(" ".join(attacker.unknowns[i]) for i in ids[:limit])


def test_simple_differencing_recovers_nothing(attack):
    attacker, _ = attack
    a, _, kinds = attacker.matrix()
    per_row = np.diff(a.indptr)
    single = np.flatnonzero(per_row == 1)
    recovered = np.unique(a.indices[a.indptr[single]])
    assert not len(recovered), (
        f"{len(recovered)} hidden cells given back by one equation (parent − visible "
        f"children, week − visible days, rate × population…), e.g. "
        f"{_describe(attacker, recovered)}; by kind: "
        f"{pd.Series(kinds[single]).value_counts().to_dict()}")


def test_hidden_members_never_add_up_to_a_small_count(attack):
    attacker, _ = attack
    a, b, kinds = attacker.matrix()
    sums = np.isin(kinds, ("hierarchy", "week"))
    minus_ones = np.asarray((a == -1).sum(axis=1)).ravel()
    per_row = np.diff(a.indptr)
    # Visible total, every unknown a member: Σ hidden = the constant.
    rows = np.flatnonzero(sums & (per_row >= 1) & (minus_ones == per_row))
    small = rows[(b[rows] > 1e-9) & (b[rows] < THRESHOLD - 1e-9)]
    assert not len(small), (f"{len(small)} published totals whose hidden members add up to "
                            f"less than {THRESHOLD}, e.g. "
                            f"{_describe(attacker, a[small[:3]].indices)}")


def test_no_hidden_cell_is_determined_by_all_published_equations(attack):
    attacker, _ = attack
    a, _, kinds = attacker.matrix()
    assert a.shape[1] > 1000, "the attack should face thousands of hidden cells"
    assert {"hierarchy", "week", "saturday", "incidence", "positivity", "variant_share",
            "coverage", "estimate", "growth", "risk"} <= set(kinds)
    try:
        found = np.flatnonzero(determined_unknowns(a))
    except ValueError as exc:  # blocks too large to solve: the chains of today's answers
        pytest.fail(f"published equations too entangled to check: {exc}")
    assert not len(found), (f"{len(found)} hidden cells determined by the published "
                            f"equations, e.g. {_describe(attacker, found)}")


def test_json_and_french_csv_hide_what_the_csv_hides(attack):
    attacker, app = attack
    client = app.test_client()
    window = {"start": "2020-10-25", "end": "2020-11-07"}
    for (name, frequency), tab in attacker.tables.items():
        items, page = [], 1
        while True:
            body = client.get("/api/v1/data", query_string={
                "indicator": name, "frequency": frequency, "per_page": 1000, "page": page,
                **window}).get_json()
            items += body["items"]
            if page >= body["pagination"]["pages"]:
                break
            page += 1
        text = client.get("/api/v1/data", query_string={
            "indicator": name, "frequency": frequency, "format": "csv", "sep": ";",
            **window}).get_data(as_text=True)
        french = pd.read_csv(io.StringIO(text.lstrip("\ufeff")), sep=";", decimal=",",
                             dtype={"territory": str})
        assert len(french) == len(items)
        for item, (_, row) in zip(items, french.iterrows(), strict=True):
            r = tab.row(item["territory"])
            c = tab.dates.get_indexer([pd.Timestamp(item["date"])])[0]
            assert item["suppressed"] == bool(tab.hidden[r, c]) == bool(row["suppressed"]), \
                (name, frequency, item)
            if item["suppressed"]:
                assert item["value"] is None and pd.isna(row["value"])


def _forecast_values(body: dict) -> list[tuple[dict, float]]:
    return [(item, q["value"]) for item in body["items"] for q in item["quantiles"]
            if q["value"] is not None]


def test_forecasts_and_alerts_say_no_more_than_the_observations(attack):
    attacker, app = attack
    client = app.test_client()
    icu = attacker.table("icu", "daily")
    for query in ({"target": "icu", "level": "department"},
                  {"target": "inc_hosp", "frequency": "weekly", "level": "national"}):
        body = client.get("/api/v1/forecasts", query_string=query).get_json()
        assert body["items"]
        small = [(i["location"], i["target"], v) for i, v in _forecast_values(body)
                 if 0 < v < THRESHOLD]
        assert not small, f"forecast quantiles below the threshold published: {small[:5]}"
        hub = pd.read_csv(io.BytesIO(client.get("/api/v1/forecasts", query_string={
            **query, "format": "hub"}).data), dtype={"location": str})
        assert not ((hub["value"] > 0) & (hub["value"] < THRESHOLD)).any()
    body = client.get("/api/v1/forecasts", query_string={"target": "icu",
                                                          "level": "department"}).get_json()
    for item in body["items"]:
        r = icu.row(item["location"])
        c = icu.dates.get_indexer([pd.Timestamp(item["target_end_date"])])[0]
        if r >= 0 and c >= 0 and icu.hidden[r, c]:
            assert item["suppressed"] and all(q["value"] is None for q in item["quantiles"]), \
                f"forecast shown where the observation is hidden: {item['location']}"
    alerts = client.get("/api/v1/alerts", query_string={"level": "department",
                                                        "per_page": 200}).get_json()
    forecasts = {(i["location"], i["horizon"]): i for i in body["items"]}
    beds = attacker.table("icu_beds_adult", "yearly")
    for item in alerts["items"]:
        for key, horizon in (("median_7d", 7), ("median_14d", 14)):
            shown = forecasts.get((item["territory"], horizon))
            if item[key] is not None:
                assert shown is not None and shown["median"] == item[key]
                assert not 0 < item[key] < THRESHOLD
        if item["capacity"] is not None:  # the same capacity as /data (a public fact)
            r = beds.row(item["territory"])
            c = beds.dates.get_indexer([pd.Timestamp(item["capacity_date"])])[0]
            assert beds.value[r, c] == item["capacity"] and not beds.hidden[r, c]


def test_model_outputs_never_shown_over_hidden_inputs(attack):
    """R(t) and growth from a window holding a hidden day, and beds occupied rebuilt from
    hidden flows, are inverted exactly by anyone who knows the published method."""
    attacker, _ = attack
    basis = attacker.table("epidemic_basis", "daily")
    leaks = []
    for name in ("rt", "rt_lower", "rt_upper", "growth_rate", "doubling_time"):
        tab = attacker.table(name, "daily")
        for code in tab.codes:
            r, b = tab.row(code), basis.row(code)
            for kind, series_name in EPIDEMIC_BASIS.items():
                series = attacker.table(series_name, "daily")
                rs = series.row(code)
                if rs < 0:
                    continue
                hidden = np.concatenate([[0], np.cumsum(series.hidden[rs])])
                t = np.flatnonzero(tab.present[r] & ~tab.hidden[r] & (basis.value[b] == kind))
                end = series.dates.get_indexer(tab.dates[t])
                start = np.maximum(end - 26, 0)
                window = hidden[end + 1] - hidden[start]
                leaks += [(name, code, str(tab.dates[j].date())) for j in t[window > 0]]
    assert not leaks, f"{len(leaks)} epidemic values over hidden inputs, e.g. {leaks[:5]}"
    for stock, flows in (("icu", ("inc_icu",)), ("hosp", ("inc_hosp", "inc_discharge",
                                                           "inc_death"))):
        tab, origin = attacker.table(stock, "daily"), attacker.table(f"{stock}_origin", "daily")
        for code in tab.codes:
            r, o = tab.row(code), origin.row(code)
            rebuilt = np.flatnonzero(tab.present[r] & ~tab.hidden[r]
                                     & (origin.value[o] == 2))
            for flow in flows:
                f = attacker.table(flow, "daily")
                rf = f.row(code)
                if rf < 0 or not len(rebuilt):
                    continue
                hidden = np.concatenate([[0], np.cumsum(f.hidden[rf])])
                end = f.dates.get_indexer(tab.dates[rebuilt])
                window = hidden[end + 1] - hidden[np.maximum(end - 119, 0)]
                assert not (window > 0).any(), (
                    f"{stock} of {code} rebuilt from hidden {flow} shown on "
                    f"{(window > 0).sum()} days")
