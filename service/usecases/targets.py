"""The forecastable targets of the served cube, for ``/api/v1/targets`` and the dashboard.

A read use case (:mod:`service.usecases.reads`): every built-in target and every count or rate
indicator of the served vintage (:func:`models.targets.cube_targets`), each with its French
label and unit, horizons, the levels it is forecast at, whether the scheduled refresh publishes
it (:func:`service.usecases.forecasts.published_targets`) and the verdict of its track record
against the baseline (:func:`models.verdict.baseline_verdict`), which the city page says.
"""

from __future__ import annotations

from typing import Any

from models.verdict import STATUSES
from service.errors import bad_request, not_found
from service.usecases.reads import ReadContext

HORIZON_UNITS_FR = {"wk": ("semaine", "semaines"), "day": ("jour", "jours"),
                    "qtr": ("trimestre", "trimestres")}
LEVELS_FR = {"national": "France", "region": "régions", "department": "départements",
             "epci": "intercommunalités", "commune": "communes"}
PERIODS_FR = {"held_out": "les dates de validation (à partir du 1er mars 2021, jamais utilisées "
                          "pour choisir les modèles)",
              "development": "la période de développement (avant le 1er mars 2021)"}


def horizons_fr(target: Any) -> list[str]:
    one, many = HORIZON_UNITS_FR[target.unit]
    return [f"à {n} {one if n == 1 else many}" for n in target.horizons]


def _not_better_fr(level: dict, unit: str) -> str:
    """``régions (pas à 1 trimestre)``: a mixed level and the horizons it does not beat."""
    one, many = HORIZON_UNITS_FR.get(unit, ("", ""))
    worse = [int(h) for h, v in level["relative_wis"].items() if v >= 1]
    said = ", ".join(f"{h} {one if h == 1 else many}" for h in sorted(worse))
    return f"{LEVELS_FR.get(level['level'], level['level'])} (pas à {said})"


def verdict_fr(verdict: dict, unit: str = "wk") -> str:
    """One French sentence saying whether Vigie beats the naive reference, and where
    (``unit``: the target's horizon unit, to name the horizons it does not beat)."""
    status, period = verdict["status"], PERIODS_FR.get(verdict.get("period") or "", "")
    if status == "not_scored":
        return ("Pas encore évalué : l'historique des prévisions passées n'est pas encore "
                "calculé, ou la série est trop courte.")
    if status == "beats_baseline":
        return (f"Sur {period}, Vigie fait mieux que la référence naïve (dernière valeur "
                "prolongée) à tous les horizons et à tous les échelons évalués.")
    if status == "does_not_beat_baseline":
        return (f"Sur {period}, Vigie ne fait pas mieux que la référence naïve (dernière valeur "
                "prolongée) : ses prévisions sont à lire avec prudence.")
    by_status = {s: [lv for lv in verdict["levels"] if lv["status"] == s] for s in STATUSES}
    parts = [f"Sur {period}, Vigie fait mieux que la référence naïve (dernière valeur "
             "prolongée) à certains horizons ou échelons seulement"]
    if by_status["beats_baseline"]:
        parts.append("mieux à tous les horizons pour : " + ", ".join(
            LEVELS_FR.get(lv["level"], lv["level"]) for lv in by_status["beats_baseline"]))
    if by_status["mixed"]:
        parts.append("en partie pour : " + ", ".join(
            _not_better_fr(lv, unit) for lv in by_status["mixed"]))
    if by_status["does_not_beat_baseline"]:
        parts.append("pas mieux pour : " + ", ".join(
            LEVELS_FR.get(lv["level"], lv["level"])
            for lv in by_status["does_not_beat_baseline"]))
    return " ; ".join(parts) + "."


def _vintage(ctx: ReadContext) -> str:
    for frequency in ("daily", "weekly", "quarterly", "yearly"):
        try:
            return str(ctx.open_dataset(frequency).attrs.get("vintage_id", ""))
        except (KeyError, LookupError):
            continue
    return ""


def _entries(ctx: ReadContext) -> list[dict]:
    """Every target of the served vintage with its listing fields, verdict aside (memoised
    per vintage)."""
    from models.targets import cube_targets
    from service.labels import indicator_fr
    from service.usecases.forecasts import published_targets

    opened: dict[str, Any] = {}

    def opener(frequency: str, _as_of: Any = None) -> Any:
        """The served datasets, each opened once for the whole listing."""
        if frequency not in opened:
            opened[frequency] = ctx.open_dataset(frequency)
        return opened[frequency]

    def build() -> list[dict]:
        published = set(published_targets(ctx.settings, opener=opener))
        out = []
        for t in cube_targets(opener):
            entry = ctx.find_indicator(t.variable, t.frequency) or {}
            label, units_fr = indicator_fr(t.variable, entry.get("description", ""),
                                           entry.get("units", ""))
            out.append({
                "name": t.name, "frequency": t.frequency, "variable": t.variable,
                "label": label, "units": entry.get("units", ""), "units_fr": units_fr,
                "kind": t.kind, "derived": t.derived,
                "published": (t.name, t.frequency) in published,
                "levels": list(t.levels), "horizons": list(t.horizons),
                "horizon_unit": t.unit, "horizons_fr": horizons_fr(t),
                "hub_targets": [t.hub_target(n) for n in t.horizons],
                "first_date": entry.get("first_date"), "last_date": entry.get("last_date"),
            })
        return out

    return ctx.memo(("targets", _vintage(ctx)), build)


def _with_verdict(items: list[dict], settings: Any) -> list[dict]:
    from models.trackrecord import load_retrospective
    from models.verdict import baseline_verdict

    rows = load_retrospective(settings) or []
    out = []
    for item in items:
        mine = [r for r in rows if r["target"] == item["name"]
                and r["frequency"] == item["frequency"]]
        verdict = baseline_verdict(mine)
        out.append({**item, "verdict": {**verdict, "text_fr": verdict_fr(
            verdict, item["horizon_unit"])}})
    return out


def observed_at(datasets: dict, item: dict, code: str) -> bool:
    """Whether ``datasets`` (frequency → dataset) observe the target ``item`` (a listing
    entry) for territory ``code`` on at least one date."""
    ds = datasets[item["frequency"]]
    return code in ds.indexes["territory"] and \
        bool(ds[item["variable"]].sel(territory=code).notnull().any())


def list_targets(ctx: ReadContext, *, territory: str | None = None,
                 published: bool | None = None) -> list[dict]:
    """Every forecastable target (``territory``: those observed for that territory at a level
    they are forecast at; ``published``: those the refresh forecasts, or not)."""
    from models.targets import LEVEL_OF

    items = _entries(ctx)
    if published is not None:
        items = [i for i in items if i["published"] is published]
    if territory:
        table = ctx.territory_table()
        if territory not in table:
            raise bad_request("unknown territory code(s)", unknown=[territory])
        level = LEVEL_OF.get(table[territory]["level"])
        datasets = {f: ctx.open_dataset(f) for f in {i["frequency"] for i in items}}
        items = [i for i in items
                 if level in i["levels"] and observed_at(datasets, i, territory)]
    return _with_verdict(items, ctx.settings)


def target_entry(ctx: ReadContext, name: str, frequency: str | None = None) -> dict:
    """One target (default frequency: the built-in one, else the finest holding it); 404 when
    the cube has none of that name."""
    from service.usecases.forecast_reads import read_target

    try:
        target = read_target(ctx, name, frequency)
    except KeyError as exc:
        raise not_found(str(exc.args[0] if exc.args else exc)) from exc
    for item in _entries(ctx):
        if item["name"] == target.name and item["frequency"] == target.frequency:
            return _with_verdict([item], ctx.settings)[0]
    raise not_found(f"no target {name!r} in the served cube")
