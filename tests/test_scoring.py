"""Scores checked against values computed by hand (Bracher et al. 2021 definitions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.base import QUANTILES_ARR
from models.scoring import bias, coverage, interval_score, score_table, summarise, wis

LEVELS3 = np.array([0.25, 0.5, 0.75])


def test_wis_by_hand_outside_interval():
    # y = 10, median 6, 50 % interval [4, 8]:
    # 1/2·|10-6| = 2;  IS = (8-4) + 2/0.5·(10-8) = 12;  α/2·IS = 3;  WIS = (2+3)/1.5
    assert wis(np.array([[4.0, 6.0, 8.0]]), np.array([10.0]), LEVELS3)[0] == pytest.approx(5 / 1.5)


def test_wis_by_hand_inside_interval():
    # y = 5: 1/2·1 = 0.5; IS = 4, α/2·IS = 1; WIS = 1.5/1.5 = 1
    assert wis(np.array([[4.0, 6.0, 8.0]]), np.array([5.0]), LEVELS3)[0] == pytest.approx(1.0)


def test_wis_two_intervals_by_hand():
    # levels 0.1, 0.25, 0.5, 0.75, 0.9; q = 1, 3, 5, 7, 9; y = 0
    # median: 0.5·5 = 2.5
    # α=0.5 [3,7]: IS = 4 + 4·3 = 16, ×0.25 = 4
    # α=0.2 [1,9]: IS = 8 + 10·1 = 18, ×0.1 = 1.8
    # WIS = (2.5 + 4 + 1.8) / 2.5 = 3.32
    levels = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    value = wis(np.array([[1.0, 3, 5, 7, 9]]), np.array([0.0]), levels)[0]
    assert value == pytest.approx(3.32)


def test_wis_of_a_point_forecast_is_the_absolute_error():
    q = np.full((1, 23), 7.0)
    assert wis(q, np.array([10.0]))[0] == pytest.approx(3.0)


def test_wis_equals_scaled_pinball_sum():
    rng = np.random.default_rng(1)
    q = np.sort(rng.gamma(3, 10, size=(50, 23)), axis=1)
    y = rng.gamma(3, 10, size=50)
    pinball = np.where(y[:, None] < q, 1 - QUANTILES_ARR, -QUANTILES_ARR) * (q - y[:, None])
    np.testing.assert_allclose(wis(q, y), pinball.sum(axis=1) / 11.5)


def test_interval_score_by_hand():
    assert interval_score(np.array([2.0]), np.array([4.0]), np.array([5.0]), 0.2)[0] == 12.0


def test_coverage_and_bias_by_hand():
    q = np.array([[4.0, 6.0, 8.0]] * 5)
    y = np.array([3.0, 4.0, 6.0, 7.0, 9.0])
    assert coverage(q, y, 0.5, LEVELS3).tolist() == [False, True, True, True, False]
    # below all: 1; y=4 (=q.25 < median): 1-2·0.25 = 0.5; at median 0;
    # y=7: 1-2·min{τ: q_τ >= 7} = 1-1.5 = -0.5; above all: -1
    np.testing.assert_allclose(bias(q, y, LEVELS3), [1.0, 0.5, 0.0, -0.5, -1.0])


def test_relative_wis_against_baseline():
    cols = ["q0.25", "q0.5", "q0.75"]
    base = pd.DataFrame({"model": "baseline", "territory": ["01", "02"], "forecast_date": "d",
                         "horizon": 1, "q0.25": [4.0, 4], "q0.5": [6.0, 6], "q0.75": [8.0, 8],
                         "observed": [10.0, 5.0]})
    good = base.assign(model="m", **{"q0.25": [8.0, 4], "q0.5": [10.0, 5], "q0.75": [12.0, 6]})
    scored = score_table(pd.concat([base, good]), cols)
    out = summarise(scored, ["horizon"]).set_index("model")
    # baseline WIS: 5/1.5 and 1; model: IS of [8,12] = 4 → 1/1.5 and [4,6] → 0.5/1.5
    expected = (1 / 1.5 + 0.5 / 1.5) / (5 / 1.5 + 1)
    assert out.loc["m", "rel_wis"] == pytest.approx(expected)
    assert out.loc["baseline", "rel_wis"] == pytest.approx(1.0)
    assert out.loc["m", "cov50"] == 1.0
