"""Any forecast target on the dashboard: the targets forecast for a territory
(:func:`forecast_choices`) and one of them as a page draws it (:func:`target_view`).

The Territoire page's panels show fixed targets (admissions, beds and ICU beds, emergency
visits, unemployment). Every other target of the served cube (``models.targets``: a city
indicator summed into its département, cases, tests…) that has a stored forecast at the
territory's level, whether the refresh publishes it or someone saved it
(``python -m service forecast --target inc_cases --frequency weekly --level region
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
    ``{target, frequency, label, unit, published}``. Empty outside the forecast levels.
    One listing of the forecast store's pointers, then the observations of the few
    candidates only (a page load, not a scan of every target)."""
    from service.usecases.targets import observed_at

    level = place_level(ctx, code)
    if level is None:
        return []
    shown = set(shown)
    kinds = ctx.forecast_store().latest_kinds()
    choices = []
    for target in targets_at(ctx, level).values():
        key = (target["name"], target["frequency"])
        prefix = f"{key[0]}_{key[1]}_{level}_"
        if key in shown or not any(kind.startswith(prefix) for kind in kinds):
            continue
        if not observed_at({key[1]: ctx.open_dataset(key[1])}, target, code):
            continue
        choices.append({"target": key[0], "frequency": key[1], "label": target["label"],
                        "unit": target["units_fr"], "published": target["published"]})
    return sorted(choices, key=lambda c: (c["label"].casefold(), c["frequency"]))


def target_view(ctx: ReadContext, code: str, target: str, frequency: str) -> dict:
    """The target ``target`` at ``frequency`` for ``code`` as the page draws it
    (:func:`service.usecases.city_reads.indicator_view`, with ``territory``); ApiError 404
    when ``code`` is outside the forecast levels or the target is not forecast there."""
    level = place_level(ctx, code)
    if level is None:
        raise not_found(f"no forecast level for territory {code!r}")
    for entry in targets_at(ctx, level).values():
        if entry["name"] == target and entry["frequency"] == frequency:
            return {"territory": code,
                    **indicator_view(ctx, entry["variable"], frequency, code,
                                     {(entry["variable"], frequency): entry}, level)}
    raise not_found(f"no target {target!r} ({frequency}) forecast at level {level!r}")
