"""Command line entry point.

Each module in this package that defines ``register(subparsers)`` adds its commands; the
module is discovered automatically, so commands are added without editing a central list.
A registered command sets ``func`` (taking the parsed ``argparse.Namespace`` and returning an
exit code) with ``parser.set_defaults(func=...)``.

One grammar for every command (``tests/test_cli_grammar.py`` checks it on every parser):

* the same option name for the same thing: ``--territory``, ``--as-of``, ``--model``,
  ``--level``, ``--target``, ``--out``, ``--data-dir``, ``--json``;
* options that take several values take them both ways: ``--territory 69 13 FR`` and
  ``--territory 69 --territory 13`` (:func:`add_territory_option`);
* every command's ``--help`` ends with examples (:data:`EXAMPLES`), each of which parses.

What the terminal shows: one line per step, a progress bar on long steps, Vigie's warnings
and errors (a warning repeated word for word is shown once); the libraries' INFO logs (Dask,
Alembic, cmdstanpy, Prophet…) and Vigie's debug messages only with ``-v``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import os
import pkgutil
import re
import sys

#: Loggers of Vigie's own packages: INFO shown by default (steps), the rest of the world from
#: WARNING unless ``-v``.
VIGIE_LOGGERS = ("service", "features", "models", "scenarios")
#: Libraries whose INFO logs are shown only with ``-v``.
LIBRARY_LOGGERS = ("distributed", "alembic", "cmdstanpy", "prophet", "apscheduler", "waitress",
                   "matplotlib", "numexpr")
#: Environment variable handed to child processes (Dask workers, job workers): the log level.
LOG_LEVEL_ENV = "VIGIE_LOG_LEVEL"

#: Examples closing each command's ``--help`` (command path → lines). A command without an
#: entry fails tests/test_cli_grammar.py.
EXAMPLES: dict[str, list[str]] = {
    "": ["python -m service ingest",
         "python -m service forecast-all",
         "python -m service serve --port 8000",
         "python -m service -v forecast-all          # with the libraries' logs"],
    "ingest": ["python -m service ingest",
               "python -m service ingest --data-dir ../shared/data --json",
               "python -m service ingest --source spf_hospital_flows spf_bed_occupancy --force"],
    "cube": ["python -m service cube info --as-of 2020-10-25"],
    "cube info": ["python -m service cube info",
                  "python -m service cube info --as-of 2020-10-25 --json"],
    "cube export": ["python -m service cube export --indicator inc_hosp --territory FR 69 13 "
                    "--out admissions.csv",
                    "python -m service cube export --indicator hosp --territory 69 --territory 13 "
                    "--as-of 2021-01-04 --out lits.csv",
                    "python -m service cube export --indicator population --territory "
                    "200046977 --out population.csv"],
    "cube vintages": ["python -m service cube vintages", "python -m service cube vintages --json"],
    "forecast": ["python -m service forecast --target inc_hosp --level national --out fr.csv",
                 "python -m service forecast --target icu --level department --territory 69 13 "
                 "--as-of 2021-04-05 --out rea.csv --save",
                 "python -m service forecast --target inc_hosp --level region --territory R84 "
                 "--territory R93 --model gbm --horizon 2 --out r.csv"],
    "forecast-all": ["python -m service forecast-all",
                     "python -m service forecast-all --target inc_hosp icu --level national",
                     "python -m service forecast-all --as-of 2021-11-29 --force"],
    "backtest": ["python -m service backtest --target inc_hosp --level national "
                 "--start 2020-09-07 --end 2021-02-22 --out bt.csv",
                 "python -m service backtest --target hosp --level department --territory 69 13 "
                 "--start 2021-01-04 --end 2021-03-29 --all-models --out bt_hosp.csv",
                 "python -m service backtest --target food_aid_requests --level epci --territory "
                 "243500139 --start 2021-03-01 --end 2021-11-29 --out bt_rennes.csv"],
    "score": ["python -m service score bt.csv",
              "python -m service score ensemble.csv --baseline baseline.csv --json"],
    "trackrecord": ["python -m service trackrecord",
                    "python -m service trackrecord --target inc_hosp hosp --json"],
    "scenario": ["python -m service scenario list",
                 "python -m service scenario run scenarios/status_quo.yaml --out sq.json"],
    "scenario run": ["python -m service scenario run scenarios/lockdown_2020_11.yaml "
                     "--territory FR 69 13 --out confinement.json",
                     "python -m service scenario run scenarios/status_quo.yaml --territory 69 "
                     "--territory 13 --as-of 2020-10-25 --out sq.json"],
    "scenario compare": ["python -m service scenario compare scenarios/status_quo.yaml "
                         "scenarios/lockdown_2020_11.yaml --territory FR 69 --plot cmp.png"],
    "scenario list": ["python -m service scenario list"],
    "serve": ["python -m service serve", "python -m service serve --host 0.0.0.0 --port 8765",
              "python -m service serve --no-scheduler --threads 16"],
    "token": ["python -m service token create --role analyst --name 'cellule Rhône'"],
    "token create": ["python -m service token create --role analyst --name 'cellule Rhône'",
                     "python -m service token create --role city --name 'Rennes' "
                     "--territory 35238 243500139"],
    "token list": ["python -m service token list"],
    "token revoke": ["python -m service token revoke 3"],
    "jobs": ["python -m service jobs list", "python -m service jobs run forecast"],
    "jobs list": ["python -m service jobs list"],
    "jobs run": ["python -m service jobs run ingest",
                 "python -m service jobs run forecast --param model='\"ensemble\"' "
                 "--param runs='[[\"inc_hosp\", \"weekly\"]]'"],
    "jobs history": ["python -m service jobs history --limit 50"],
    "prune": ["python -m service prune --dry-run",
              "python -m service prune --keep-vintages 10 --keep-runs 4 --json"],
    "upload": ["python -m service upload tests/fixtures/city_indicators_synthetic_epci.csv",
               "python -m service upload aide_alimentaire_2021-12.csv --as rennes_social.csv "
               "--json"],
    "db": ["python -m service db upgrade"],
    "db upgrade": ["python -m service db upgrade"],
    "db current": ["python -m service db current"],
}


def iso_date(text: str) -> str:
    """argparse type of a date option (``--as-of``, ``--start``, ``--end``): a calendar date
    ``YYYY-MM-DD``, given back in that form; else argparse's usage error naming what was
    found (the commands used to fail later with a parser traceback)."""
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date YYYY-MM-DD, found {text[:40]!r}") from None


def positive_int(text: str) -> int:
    """argparse type of a count that must be 1 or more (``--every``, ``--horizon``,
    ``--samples``, ``--limit``): ``--every 0`` divided by zero, ``--samples -5`` failed inside
    numpy."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, found "
                                         f"{text[:40]!r}")
    return value


def add_territory_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--territory CODE [CODE …]``, repeatable: ``--territory 69 13`` = ``--territory 69
    --territory 13``."""
    parser.add_argument("--territory", nargs="+", action="extend", metavar="CODE", help=help)


def subcommands(parser: argparse.ArgumentParser, path: str = ""):
    """(command path, parser) of ``parser`` and every sub-command below it, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subcommands(sub, f"{path} {name}".strip())


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped as usual; the examples block printed as written (each example
    stays on one line, ready to copy)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        head, marker, examples = text.partition("examples:")
        filled = super()._fill_text(head, width, indent) if head.strip() else ""
        if not marker:
            return filled
        raw = indent + marker + examples.replace("\n", "\n" + indent)
        return f"{filled}\n\n{raw}" if filled else raw


def _with_examples(parser: argparse.ArgumentParser, path: str) -> None:
    """Close the command's help with its examples, printed as written."""
    lines = EXAMPLES.get(path)
    parser.formatter_class = HelpFormatter
    if lines and "examples:" not in (parser.epilog or ""):
        block = "examples:\n" + "\n".join(f"  {line}" for line in lines)
        parser.epilog = f"{parser.epilog}\n\n{block}" if parser.epilog else block


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Vigie: crisis-response analytics and forecasting for French territories.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the libraries' INFO logs (Dask, Alembic, cmdstanpy…) "
                             "and Vigie's debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    for path, sub in subcommands(parser):
        _with_examples(sub, path)
        if sub is not parser:  # -v after the command works too: python -m service serve -v
            sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help=argparse.SUPPRESS)
    return parser


def repeat_key(record: logging.LogRecord) -> tuple:
    """What makes two warnings the same fact: logger, message template and its arguments but
    the detail (the last of several; the numbers of a single one): "gbm: leading signal X
    dropped (27 periods of history)" at 28 calibration dates is one fact, shown once with its
    first detail."""
    args = tuple(map(str, record.args)) if isinstance(record.args, tuple) else ()
    kept = args[:-1] if len(args) > 1 else tuple(re.sub(r"\d+", "#", a) for a in args)
    return (record.name, str(record.msg), *kept)


class _OncePerMessage(logging.Filter):
    """Let a repeated warning through once (see :func:`repeat_key`)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:  # errors are always shown
            return True
        key = repeat_key(record)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


class _TerminalFormatter(logging.Formatter):
    """Steps as plain lines, ``warning: …`` / ``error: …`` for the rest."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


class _TqdmHandler(logging.StreamHandler):
    """Writes through ``tqdm.write`` so that a log line does not break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def configure_logging(verbose: bool = False) -> None:
    """Terminal logging: Vigie's steps, warnings and errors; everything with ``verbose``.

    Also sets what child processes inherit: :data:`LOG_LEVEL_ENV` (read by the Dask workers
    and the job worker) and Dask's own logger level, so that a LocalCluster's workers are as
    quiet as this process.
    """
    level = logging.DEBUG if verbose else logging.WARNING
    os.environ[LOG_LEVEL_ENV] = "DEBUG" if verbose else "WARNING"
    if not verbose:
        # Read by dask.config when distributed is first imported, here and in its workers.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "warning")
    handler = _TqdmHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_TerminalFormatter("%(message)s"))
        handler.addFilter(_OncePerMessage())
    handler._vigie = True  # replaced by the next call (in-process runs: tests, notebooks)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_vigie", False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in VIGIE_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:  # the models' per-fit notes (fallbacks to the baseline…) are detail
        logging.getLogger("models").setLevel(logging.WARNING)
    quiet = {name: logging.WARNING for name in LIBRARY_LOGGERS}
    # Shutting a LocalCluster down says it killed its idle workers: not news.
    quiet.update({"distributed.nanny": logging.ERROR, "distributed.worker": logging.ERROR})
    for name, quiet_level in quiet.items():  # with -v: back to the root's level
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else quiet_level)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(bool(getattr(args, "verbose", False)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from features.errors import NoVintageError, SchedulerUnreachable
    from features.storage.objects import StoreConfigError

    try:
        return int(args.func(args) or 0)
    except (StoreConfigError, SchedulerUnreachable) as exc:  # VIGIE_STORE_URL, _DASK_ADDRESS…
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except NoVintageError as exc:  # a command that reads the cube, on a home never ingested
        print(f"no data yet: {exc or 'the store holds no cube vintage'}; run "
              "'python -m service ingest' first", file=sys.stderr)
        return 1
