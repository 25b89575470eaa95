"""``python -m service <command>``: Vigie's command line."""

import sys


def _hostile_scenario_files(argv: list[str]) -> bool:
    """``scenario run/compare``: check the YAML files named on the line (size, anchors and
    aliases, nesting: :mod:`features.safe_yaml`, PyYAML alone) before the command line imports
    its data stack (about 2 s of CPU), so that an alias bomb is answered at once."""
    if "scenario" not in argv[:3]:
        return False
    from pathlib import Path

    from features.safe_yaml import check_file

    bad = False
    for arg in argv:
        if arg.lower().endswith((".yaml", ".yml")) and Path(arg).is_file():
            problem = check_file(arg)
            if problem:
                print(f"invalid scenario:\n{arg}: (file): {problem}", file=sys.stderr)
                bad = True
    return bad


if __name__ == "__main__":
    if _hostile_scenario_files(sys.argv[1:]):
        sys.exit(2)
    from service.cli import main

    sys.exit(main())
