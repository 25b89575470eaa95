"""Plumbing shared by the analyst notebooks (no analysis logic here).

``import _setup`` from a notebook in this folder puts the project root on ``sys.path`` (so
``features``, ``models``, ``scenarios`` and ``service`` import without installing anything) and
:func:`settings` returns Vigie's settings from the environment (``VIGIE_HOME``,
``VIGIE_DATA_DIR``, ``VIGIE_DATABASE_URL``), ingesting the data folder first when the home holds
no cube yet, so that every notebook runs top to bottom on a fresh machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


def settings(verbose: bool = True):
    """Vigie's settings; the data folder is ingested first if the home has no vintage yet.

    Parameters
    ----------
    verbose:
        Print the home, the data folder and the vintage served.

    Returns
    -------
    features.settings.Settings
    """
    from features.errors import NoVintageError
    from features.ingest import run_ingest
    from features.settings import Settings
    from features.store import CubeStore

    s = Settings.from_env()
    store = CubeStore(s)
    try:
        current = store.current_vintage()
    except NoVintageError:
        if verbose:
            print(f"Aucun cube dans {s.home} : ingestion de {s.data_dir} …")
        report = run_ingest(s)
        if report.outcome not in ("ok", "partial"):
            raise RuntimeError(f"ingestion impossible : {report.message}") from None
        current = store.current_vintage()
    if verbose:
        print(f"VIGIE_HOME      : {s.home}")
        print(f"données lues de : {s.data_dir}")
        issued = f"{current['issued_at']:%Y-%m-%d %H:%M} UTC"
        print(f"vintage courant : {current['id']} (émis le {issued})")
    return s
