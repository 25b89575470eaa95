"""Départements' 7-day incidence estimated from variant screening (``incidence_rate_7d_estimated``).

The shared data has daily positive *persons* (SI-DEP, ``inc_cases``) for France and the régions
only, so a département's ``incidence_rate_7d`` is unknown (except Bourgogne-Franche-Comté's until
2021-01) and with it the incidence criteria of the risk level. From the window ending 2021-06-06
the screening files give every département's positive *tests* over sliding 7-day windows
(``screened_positive_tests``). A person tested positive twice in a week counts twice there, once
in SI-DEP, so tests are converted to persons with the région's own ratio over the same window::

    ratio_R(t)  = Σ7 inc_cases_R (7 days ending t) / screened_positive_tests_R(t)
    estimate_d(t) = screened_positive_tests_d(t) × ratio_R(t) / population_d × 100,000

where ``R`` is the région of ``d`` and ``screened_positive_tests_R`` the sum of its départements'
tests (the cube's aggregation). The windows are aligned: the screening window is dated by its
last day like the SI-DEP 7-day sum; shifting one by a day makes the ratio's mean day-to-day
change six times larger (``bench/incidence_estimated.py``).

By construction the population-weighted sum over a région's départements gives back the région's
``incidence_rate_7d`` exactly (Σ_d tests_d × ratio_R = tests_R × ratio_R = persons_R, and the
région's population is the sum of its départements'). What it cannot know is how a département's
own persons-per-test ratio differs from its région's: the ratio is 0.72 to 0.89 depending on
the région (2021-06..2021-12 means), so using the région's ratio rather than a national one
removes most of that spread; within a région the départements' ratios are unobserved.

Never derived where the ratio's inputs are missing (no complete 7-day SI-DEP window for the
région, or a département of the région missing from that window) or tiny: the région must have
at least :data:`MIN_REGION_TESTS` positive tests in the window (binomial relative standard error
of a persons/tests share of 0.8 about 11 % at 20 tests). Below 20 tests in the smallest région
(Corse, 340,000 inhabitants) the incidence is under 6 per 100,000, far from any alert threshold.

Validation on the shipped data (``python bench/incidence_estimated.py``; windows ending
2021-06-06..2021-12-31, 18 régions, 3,751 région-days):

- alignment: mean day-to-day change of the ratio's log 0.008 at lag 0, 0.045 shifted by a day;
- the départements give back their région: largest relative gap 4e-16;
- persons per positive test, quantiles 1/10/50/90/99 %: 0.63 / 0.72 / 0.79 / 0.86 / 0.91; région
  means from 0.72 (Provence-Alpes-Côte d'Azur) to 0.89 (La Réunion); spread between régions on
  a day (SD 0.047) larger than one région's over the weeks (0.035); 11 région-days (Mayotte,
  Corse, summer 2021) under the minimum;
- one level up, where the truth is known, a région estimated with France's ratio errs by 3.1 %
  (median; 10.8 % at the 90th percentile) and changes its 50/150/250 class on 3.6 % of the
  région-days: the order of error to expect from a département's unobserved own ratio;
- 2021-11-28: Paris 470, Rhône 441, Bouches-du-Rhône 495, Nord 382, Côte-d'Or 232 per 100,000
  (their régions 313, 393, 417, 303, 310; France 309); La Réunion and Guyane, alone in their
  régions, equal their région's rate exactly (255.2, 91.5).
"""

from __future__ import annotations

import numpy as np

#: Fewest positive tests of the région over the window for its persons/tests ratio to be used.
MIN_REGION_TESTS = 20.0


def persons_per_test(persons_7d: np.ndarray, tests_7d: np.ndarray,
                     min_tests: float = MIN_REGION_TESTS) -> np.ndarray:
    """Positive persons per positive test over the same 7-day windows; NaN where either is
    missing or the tests are fewer than ``min_tests``."""
    persons_7d = np.asarray(persons_7d, dtype=float)
    tests_7d = np.asarray(tests_7d, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tests_7d >= min_tests, persons_7d / tests_7d, np.nan)


def estimate(tests_7d: np.ndarray, ratio: np.ndarray, population: np.ndarray) -> np.ndarray:
    """Estimated positive persons over 7 days per 100,000 inhabitants.

    Parameters
    ----------
    tests_7d:
        ``(territory, date)`` positive tests of each territory over the 7-day window.
    ratio:
        ``(territory, date)`` persons per test of each territory's région
        (:func:`persons_per_test`), aligned row by row with ``tests_7d``.
    population:
        ``(territory,)`` inhabitants; no estimate where it is not positive.
    """
    population = np.asarray(population, dtype=float).reshape(-1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(population > 0,
                        np.asarray(tests_7d, dtype=float) * ratio / population * 1e5, np.nan)
