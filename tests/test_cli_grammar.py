"""One grammar for every command of ``python -m service``, checked on every parser (so that a
new command is checked too): the same option name for the same thing, ``--territory A B C``
and ``--territory A --territory B`` everywhere, examples closing every ``--help``, each of which
parses, and ``-v`` before or after the command."""

from __future__ import annotations

import argparse
import shlex

import pytest

from service.cli import EXAMPLES, build_parser, subcommands

PARSER = build_parser()
COMMANDS = dict(subcommands(PARSER))
#: Spellings of one thing that must not come back beside the canonical one.
FORBIDDEN = {"--asof", "--as_of", "--date", "--output", "-o", "--territories", "--models",
             "--levels", "--targets", "--datadir", "--data_dir"}
#: The canonical option of each concept.
CANONICAL = {"as_of": "--as-of", "model": "--model", "level": "--level", "out": "--out",
             "territory": "--territory", "target": "--target", "data_dir": "--data-dir",
             "json": "--json"}


def _argv(example: str) -> list[str]:
    words = shlex.split(example, comments=True)
    assert words[:3] == ["python", "-m", "service"], example
    return words[3:]


def _optionals(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def test_every_command_has_examples_in_its_help():
    missing = [path or "(top level)" for path in COMMANDS if not EXAMPLES.get(path)]
    assert missing == []
    for path, parser in COMMANDS.items():
        assert "examples:" in parser.format_help(), path
        for line in EXAMPLES[path]:
            assert line in parser.format_help(), (path, line)  # printed as written


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_every_example_parses(path):
    assert path in COMMANDS, f"examples for a command that does not exist: {path!r}"
    for example in EXAMPLES[path]:
        args = PARSER.parse_args(_argv(example))
        if path:  # an example of a command runs that command, not another one
            assert _argv(example)[: len(path.split())] == path.split(), example
        assert args.command is not None, example


def test_same_option_name_for_the_same_thing():
    by_dest: dict[str, set[str]] = {}
    for path, parser in COMMANDS.items():
        for action in _optionals(parser):
            assert not FORBIDDEN & set(action.option_strings), (path, action.option_strings)
            longs = [o for o in action.option_strings if o.startswith("--")]
            by_dest.setdefault(action.dest, set()).update(longs)
    for dest, options in by_dest.items():
        assert len(options) == 1, f"{dest} is spelt {sorted(options)}"
    for dest, option in CANONICAL.items():
        assert by_dest.get(dest, {option}) == {option}, dest


def test_territory_takes_several_codes_both_ways_everywhere():
    with_territory = []
    for path, parser in COMMANDS.items():
        for action in _optionals(parser):
            if action.dest != "territory":
                continue
            with_territory.append(path)
            assert action.option_strings == ["--territory"]
            assert isinstance(action, argparse._ExtendAction) and action.nargs == "+", path
            example = next(e for e in EXAMPLES[path])
            base = _argv(example)
            spaced = PARSER.parse_args([*base, "--territory", "69", "13", "01"]).territory
            repeated = PARSER.parse_args(
                [*base, "--territory", "69", "--territory", "13", "--territory", "01"]).territory
            mixed = PARSER.parse_args([*base, "--territory", "69", "13", "--territory",
                                       "01"]).territory
            assert spaced == repeated == mixed, path
            assert spaced[-3:] == ["69", "13", "01"], path
    # Every command that takes territories was seen (a new one is checked by the loop above).
    assert {"forecast", "backtest", "cube export", "scenario run",
            "scenario compare"} <= set(with_territory)


def test_other_multi_value_options_accept_both_forms():
    args = PARSER.parse_args(["ingest", "--source", "spf_sidep", "oxcgrt", "--source", "sursaud"])
    assert args.sources == ["spf_sidep", "oxcgrt", "sursaud"]
    args = PARSER.parse_args(["forecast-all", "--target", "inc_hosp", "icu", "--target", "hosp",
                              "--level", "national", "--level", "region"])
    assert args.target == ["inc_hosp", "icu", "hosp"]
    assert args.level == ["national", "region"]


@pytest.mark.parametrize("argv", [["-v", "serve"], ["serve", "-v"], ["serve", "--verbose"],
                                  ["-v", "scenario", "list"], ["scenario", "list", "-v"]])
def test_verbose_before_or_after_the_command(argv):
    assert PARSER.parse_args(argv).verbose is True


def test_not_verbose_by_default():
    assert getattr(PARSER.parse_args(["serve"]), "verbose", False) is False
    assert getattr(PARSER.parse_args(["scenario", "list"]), "verbose", False) is False


@pytest.fixture
def restore_logging():
    import logging
    import os

    root = logging.getLogger()
    saved = (list(root.handlers), root.level, os.environ.get("VIGIE_LOG_LEVEL"))
    names = ["alembic", "distributed", "distributed.nanny", "models", "service", "features",
             "scenarios", "cmdstanpy"]
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)
    if saved[2] is None:
        os.environ.pop("VIGIE_LOG_LEVEL", None)
    else:
        os.environ["VIGIE_LOG_LEVEL"] = saved[2]


@pytest.mark.parametrize("verbose", [False, True])
def test_terminal_shows_steps_warnings_once_and_library_info_only_with_v(capsys, restore_logging,
                                                                        verbose):
    import logging

    from service.cli import configure_logging

    configure_logging(verbose)
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("distributed.scheduler").info("Scheduler at tcp://127.0.0.1:1")
    logging.getLogger("service.cli.serve").info("Vigie API on http://127.0.0.1:8000")
    for _ in range(3):
        logging.getLogger("models.signals").warning("gbm: leading signal x stopped")
    for n in (27, 41):  # the same fact with another detail
        logging.getLogger("models.signals").warning("%s: signal %s dropped (%s)", "gbm", "y",
                                                    f"{n} periods of history")
        logging.getLogger("models.growth").warning("growth: no case signal (%s)",
                                                   f"{n} periods of history")
    logging.getLogger("models.signals").warning("%s: signal %s dropped (%s)", "gbm", "z", "-")
    for _ in range(2):
        logging.getLogger("features.ingest").error("a source failed")
    err = capsys.readouterr().err
    assert "Vigie API on http://127.0.0.1:8000" in err
    assert err.count("a source failed") == 2
    assert ("SQLiteImpl" in err) is verbose and ("Scheduler at" in err) is verbose
    assert err.count("gbm: leading signal x stopped") == (3 if verbose else 1)
    assert err.count("gbm: signal y dropped") == (2 if verbose else 1)
    assert err.count("growth: no case signal") == (2 if verbose else 1)
    assert "gbm: signal z dropped" in err


@pytest.mark.parametrize("argv", [
    ["forecast", "--target", "inc_hosp", "--level", "department", "--territory", "35"],
    ["cube", "export", "--indicator", "population", "--territory", "35"],
])
def test_a_command_that_reads_the_cube_on_an_empty_home_says_so_without_a_traceback(
        argv, tmp_path, monkeypatch, capsys):
    from service.cli import main

    monkeypatch.setenv("VIGIE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VIGIE_STORE_URL", raising=False)
    monkeypatch.delenv("VIGIE_DATABASE_URL", raising=False)
    code = main([*argv, "--out", str(tmp_path / "out.csv")])
    err = capsys.readouterr().err
    assert code in (1, 2), err
    assert "Traceback" not in err
    assert "ingest" in err, err
    assert not (tmp_path / "out.csv").exists()
