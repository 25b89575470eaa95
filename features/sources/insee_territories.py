"""INSEE official geography (COG): départements, régions and communes of 20,000+ inhabitants.

Extract: ``fr_departements_population.csv`` and ``fr_communes_20k_population.csv`` from the
Etalab package ``@etalab/decoupage-administratif`` (INSEE COG, Licence Ouverte 2.0). The registry
built from them (:class:`features.territories.Territories`) validates every other source's codes,
so this source is read first and a failure here stops the ingest (the previous vintage stays
served). The optional EPCI level (:mod:`features.sources.insee_epci`) is read here too; a refused
EPCI file does not stop the ingest: it is quarantined and its last good copy used
(:func:`features.ingest.run_ingest`). With it, the registry's communes are every commune of
``fr_communes_population.csv`` (35,049; else the 488 of 20,000+ inhabitants), each with its EPCI.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from pathlib import Path

import pandas as pd

from features.sources.checks import drop_duplicates, to_number
from features.sources.contract import Source
from features.sources.insee_epci import CommunesPopulationSource, EpciSource
from features.sources.reading import Collector, read_table
from features.territories import Territories

log = logging.getLogger(__name__)

LICENCE = "Licence Ouverte 2.0"
CODE_PATTERN = r"^(?:\d{2}|2[AB]|9[78]\d)$"
COMMUNE_PATTERN = r"^(?:\d{5}|2[AB]\d{3})$"


class DepartementsSource(Source):
    name = "insee_departements"
    title = "Départements and régions with legal populations"
    publisher = "INSEE (Code officiel géographique), via Etalab"
    licence = LICENCE
    official_url = ("https://unpkg.com/@etalab/decoupage-administratif@2.3.1/data/"
                    "departements.json")
    file_patterns = ("fr_departements_population.csv", "departements_population*.csv")

    COLUMNS = {
        "dep_code": ("dep_code", "code_departement", "dep"),
        "dep_name": ("dep_name", "nom_departement", "nom"),
        "reg_code": ("reg_code", "code_region", "region"),
        "reg_name": ("reg_name", "nom_region"),
        "zone": ("zone",),
        "population_legale_2020": ("population_legale_2020", "population"),
    }

    def read(self, path: Path) -> pd.DataFrame:
        check = Collector(self.name, path)
        frame = read_table(path, self.COLUMNS, check)
        bad = ~frame["dep_code"].fillna("").str.match(CODE_PATTERN)
        for idx in frame.index[bad][:10]:
            check.add("a département code ('01'…'95', '2A', '2B', '971'…)",
                      repr(frame.at[idx, "dep_code"]), line=idx + 2, column="dep_code")
        bad_zone = ~frame["zone"].isin(["metro", "drom", "com"])
        for idx in frame.index[bad_zone][:10]:
            check.add("zone 'metro', 'drom' or 'com'", repr(frame.at[idx, "zone"]),
                      line=idx + 2, column="zone")
        frame["population_legale_2020"] = to_number(frame, "population_legale_2020", check,
                                                    count=True, allow_missing=True)
        frame = drop_duplicates(frame, ["dep_code"], ["dep_name", "reg_code"], check)
        check.raise_if_any()
        return frame


class CommunesSource(Source):
    name = "insee_communes"
    title = "Communes of 20,000 inhabitants or more"
    publisher = "INSEE (Code officiel géographique), via Etalab"
    licence = LICENCE
    official_url = ("https://unpkg.com/@etalab/decoupage-administratif@2.3.1/data/"
                    "communes.json")
    file_patterns = ("fr_communes_20k_population.csv", "communes_20k*.csv")
    required = False

    COLUMNS = {
        "commune_insee": ("commune_insee", "code_commune", "code"),
        "commune_name": ("commune_name", "nom_commune", "nom"),
        "dep_code": ("dep_code", "code_departement", "departement"),
        "population_legale_2020": ("population_legale_2020", "population"),
    }

    def read(self, path: Path, departements: pd.DataFrame) -> pd.DataFrame:
        check = Collector(self.name, path)
        frame = read_table(path, self.COLUMNS, check)
        bad = ~frame["commune_insee"].fillna("").str.match(COMMUNE_PATTERN)
        for idx in frame.index[bad][:10]:
            check.add("a 5-character INSEE commune code", repr(frame.at[idx, "commune_insee"]),
                      line=idx + 2, column="commune_insee")
        unknown = ~frame["dep_code"].isin(departements["dep_code"])
        for idx in frame.index[unknown][:10]:
            check.add("a known département code", repr(frame.at[idx, "dep_code"]),
                      line=idx + 2, column="dep_code")
        frame["population_legale_2020"] = to_number(frame, "population_legale_2020", check,
                                                    count=True)
        frame = drop_duplicates(frame, ["commune_insee"], ["commune_name", "dep_code"], check)
        check.raise_if_any()
        return frame


def load_territories(data_dir: Path, epci_files: list[Path] | None = None
                     ) -> tuple[Territories, list[Path]]:
    """Build the territory registry from the INSEE files in ``data_dir``.

    ``epci_files``: read the optional EPCI level (and the commune list it is checked against)
    from these files instead of ``data_dir``: the ingest passes the last good copies kept in the
    raw store (named ``<sha256>-<name>``) when the data folder's EPCI file is refused; ``[]``
    leaves the level out.

    Returns the registry and the files read (for the vintage's checksums).
    """
    dep_source, com_source = DepartementsSource(), CommunesSource()
    dep_path = dep_source.fetch(data_dir)
    departements = dep_source.read(dep_path)
    paths = [dep_path]
    communes = None
    com_path = com_source.locate(data_dir)
    if com_path is not None:
        communes = com_source.read(com_path, departements)
        paths.append(com_path)
    epcis, members, tables = None, None, {}
    epci_source = EpciSource()
    all_source = CommunesPopulationSource()
    if epci_files is None:
        epci_path, all_path = epci_source.locate(data_dir), all_source.locate(data_dir)
    else:
        epci_path, all_path = _pick(epci_source, epci_files), _pick(all_source, epci_files)
    if epci_path is not None:
        all_communes = None
        if all_path is not None:
            all_communes = all_source.read(all_path, departements)
            paths.append(all_path)
        epcis, members, warnings = epci_source.read(epci_path, departements, all_communes)
        for warning in warnings:
            log.warning("%s", warning)
        paths.append(epci_path)
        tables = {"epci": epcis.rename(columns={"code": "epci_code"}),
                  "epci_communes": members}
        if all_communes is not None:
            # Every commune (not only those of 20,000+), so that any commune's file is known
            # and each EPCI's members are in the registry (features.territories: two trees).
            communes = pd.DataFrame({
                "commune_insee": all_communes["commune_code"].to_numpy(),
                "commune_name": all_communes["commune_name"].to_numpy(),
                "dep_code": all_communes["dep_code"].to_numpy(),
                "population_legale_2020": all_communes["population"].to_numpy()})
    registry = Territories.from_frames(departements, communes, epcis, members)
    registry.tables.update(tables)
    return registry, paths


def original_name(path: Path) -> str:
    """A file's published name, without the checksum prefix of its raw-store copy."""
    return RAW_COPY.sub("", path.name)


RAW_COPY = re.compile(r"^[0-9a-f]{64}-")


def _pick(source: Source, files: list[Path]) -> Path | None:
    for pattern in source.file_patterns:
        for path in files:
            if fnmatch.fnmatch(original_name(path), pattern):
                return path
    return None
