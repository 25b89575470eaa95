"""The verdict against the baseline read from track-record rows (models.verdict)."""

from __future__ import annotations

from models.verdict import baseline_verdict


def _row(level, period, horizon, rel, n=10):
    return {"target": "food_aid_requests", "frequency": "weekly", "level": level,
            "period": period, "horizon": horizon, "relative_wis": rel, "n_forecasts": n}


def test_held_out_dates_decide_when_scored():
    rows = [_row("epci", "development", 1, 1.2), _row("epci", "development", 2, 1.3),
            _row("epci", "held_out", 1, 0.8), _row("epci", "held_out", 2, 0.9)]
    verdict = baseline_verdict(rows)
    assert verdict["status"] == "beats_baseline" and verdict["period"] == "held_out"
    [epci] = verdict["levels"]
    assert epci["relative_wis"] == {"1": 0.8, "2": 0.9}
    assert epci["development"] == {"1": 1.2, "2": 1.3}
    assert epci["n_forecasts"] == 20


def test_levels_and_horizons_that_disagree_make_a_mixed_verdict():
    rows = [_row("department", "held_out", 1, 0.9), _row("department", "held_out", 2, 1.1),
            _row("commune", "held_out", 1, 1.0), _row("commune", "held_out", 2, 1.4),
            _row("epci", "held_out", 1, 0.7), _row("epci", "held_out", 2, 0.95)]
    verdict = baseline_verdict(rows)
    assert verdict["status"] == "mixed"
    assert [(lv["level"], lv["status"]) for lv in verdict["levels"]] == [
        ("department", "mixed"), ("epci", "beats_baseline"),
        ("commune", "does_not_beat_baseline")]


def test_a_baseline_copy_does_not_beat_it_and_nothing_scored_says_so():
    assert baseline_verdict([_row("epci", "development", 1, 1.0)])["status"] == \
        "does_not_beat_baseline"
    empty = baseline_verdict([_row("epci", "held_out", 1, None)])
    assert empty == {"status": "not_scored", "period": None, "levels": []}
    assert baseline_verdict([])["status"] == "not_scored"


def test_the_french_sentence_names_the_levels_and_horizons_not_beaten():
    from service.usecases.targets import verdict_fr

    rows = [_row("national", "held_out", 1, 0.92), _row("national", "held_out", 2, 0.92),
            _row("region", "held_out", 1, 2.59), _row("region", "held_out", 2, 0.83)]
    text = verdict_fr(baseline_verdict(rows), "qtr")
    assert "mieux à tous les horizons pour : France" in text
    assert "en partie pour : régions (pas à 1 trimestre)" in text
    assert text.startswith("Sur les dates de validation")
