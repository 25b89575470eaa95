"""``serve --gil-switch-ms``: the serving process's thread switch interval (service.cli.serve)."""

from __future__ import annotations

import sys

import pytest

from service.cli import build_parser
from service.cli.serve import GIL_SWITCH_MS, cmd_serve


def test_default_and_given_switch_interval_parse():
    parser = build_parser()
    assert parser.parse_args(["serve"]).gil_switch_ms == GIL_SWITCH_MS == 0.5
    assert parser.parse_args(["serve", "--gil-switch-ms", "5"]).gil_switch_ms == 5.0


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_switch_interval_that_is_not_positive_stops_before_serving(value):
    before = sys.getswitchinterval()
    args = build_parser().parse_args(["serve", "--gil-switch-ms", value])
    with pytest.raises(SystemExit, match="must be positive"):
        cmd_serve(args)
    assert sys.getswitchinterval() == before  # nothing changed, nothing served
