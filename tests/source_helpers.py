"""Steps the source tests share: a file a source must refuse (and what its message must say), and
a data file broken between two ingests (the source quarantined, its last good file reused, the
cube's values unchanged)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from features.errors import SourceError
from features.ingest import run_ingest
from features.store import CubeStore


def refusal(source, path: Path, ctx) -> str:
    """The message of the :class:`SourceError` that loading ``path`` with ``source`` raises
    (the test fails if it loads)."""
    with pytest.raises(SourceError) as info:
        source.load(path, ctx)
    return str(info.value)


def assert_says(message: str, expected: Iterable[str], case: str) -> None:
    """Every fragment of ``expected`` is in ``message`` (a failure names the case)."""
    for fragment in expected:
        assert fragment in message, f"{case}: {fragment!r} not in:\n{message}"


def assert_bad_case(source, path: Path, content: str | bytes, ctx, case: str,
                    expected: Iterable[str]) -> None:
    """``content`` written to ``path`` (text as UTF-8) is refused by ``source`` with a message
    naming the file and saying every fragment of ``expected``."""
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    message = refusal(source, path, ctx)
    assert path.name in message
    assert_says(message, expected, case)


def ingested_copy(make_settings, data_copy, *files: str):
    """A copy of the data folder (only ``files``, if named) ingested once without a failure:
    ``(folder, settings)`` of its home."""
    data = data_copy(*files)
    settings = make_settings(data)
    assert run_ingest(settings).outcome == "ok"
    return data, settings


def reingest_broken(settings, path: Path, old: str, new: str, source: str,
                    encoding: str | None = None):
    """Break the data file ``path`` (its first ``old`` becomes ``new``) and ingest again: a
    partial run in which ``source`` alone failed, the broken file quarantined as it was and the
    source's last good file reused. Returns the failed source's outcome."""
    text = path.read_text(encoding=encoding).replace(old, new, 1)
    path.write_text(text, encoding=encoding)
    report = run_ingest(settings)
    failed = {o.source: o for o in report.failed}
    assert report.outcome == "partial" and set(failed) == {source}, report.to_dict()
    assert (Path(failed[source].quarantined) / path.name).read_text(encoding=encoding) == text
    assert [o.source for o in report.sources if o.status == "reused"] == [source]
    return failed[source]


def broken_between_ingests(make_settings, data_copy, name: str, old: str, new: str, source: str,
                           variable: str, **where: str):
    """A data copy ingested, then its file ``name`` broken and ingested again
    (:func:`reingest_broken`): the daily cube's ``variable`` (at ``where``) is still the last
    good file's. Returns the failed source's outcome."""
    data, settings = ingested_copy(make_settings, data_copy)
    store = CubeStore(settings)
    before = store.open("daily")[variable].sel(**where).copy()
    failed = reingest_broken(settings, data / name, old, new, source)
    assert store.open("daily")[variable].sel(**where).equals(before)
    return failed
