"""Any forecast target on the dashboard: the targets forecast for a territory
(:func:`forecast_choices`) and one of them as a page draws it (:func:`target_view`).

The Territoire page's panels show fixed targets (admissions, beds and ICU beds, emergency
visits, unemployment). Every other target of the served cube (``models.targets``: a city
indicator summed into its département, cases, tests…) that has a stored forecast at the
territory's level, whether the refresh publishes it or someone saved it
(``python -m service forecast --target inc_cases --frequency weekly --level department
--save``), is offered in the page's « Autres prévisions » list and drawn like a city
indicator: observations, fan chart, verdict against the baseline. No code change per target.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.errors import not_found
from service.usecases.city_reads import indicator_view, place_level, targets_at
from service.usecases.reads import ReadContext


def forecast_choices(ctx: ReadContext, code: str,
                     shown: Iterable[tuple[str, str]] = ()) -> list[dict]:
    """The targets observed for ``code`` that have a stored forecast at its level, except
    ``shown`` ((target, frequency) the page already draws), by French label: each
    ``{target, frequency, label, unit, published}``. Empty outside the forecast levels."""
    from service.usecases.targets import list_targets

    level = place_level(ctx, code)
    if level is None:
        return []
    shown = set(shown)
    store = ctx.forecast_store()
    choices = [{"target": t["name"], "frequency": t["frequency"], "label": t["label"],
                "unit": t["units_fr"], "published": t["published"]}
               for t in list_targets(ctx, territory=code)
               if (t["name"], t["frequency"]) not in shown and level in t["levels"]
               and store.latest_of_any_model(t["name"], level, t["frequency"]) is not None]
    return sorted(choices, key=lambda c: (c["label"].casefold(), c["frequency"]))


def target_view(ctx: ReadContext, code: str, target: str, frequency: str) -> dict:
    """The target ``target`` at ``frequency`` for ``code`` as the page draws it
    (:func:`service.usecases.city_reads.indicator_view`); ApiError 404 when ``code`` is
    outside the forecast levels or the target is not forecast there."""
    level = place_level(ctx, code)
    if level is None:
        raise not_found(f"no forecast level for territory {code!r}")
    for entry in targets_at(ctx, level).values():
        if entry["name"] == target and entry["frequency"] == frequency:
            return indicator_view(ctx, entry["variable"], frequency, code,
                                  {(entry["variable"], frequency): entry}, level)
    raise not_found(f"no target {target!r} ({frequency}) forecast at level {level!r}")
