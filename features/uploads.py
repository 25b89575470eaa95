"""City files sent through the service: their names, their checks, the index of uploads and
which accepted upload replaces which.

A city sends a file in the shared format (:mod:`features.sources.city_indicators`) with
``POST /api/v1/uploads`` or ``python -m service upload FILE``. Before a byte of it is read as
data, its **name** is checked (:func:`check_name`: a plain ``.csv`` file name of at most
:data:`MAX_NAME_CHARS` letters, digits, ``.``, ``_`` or ``-``; no folder, no control character)
and its **size** (``Settings.upload_max_bytes``). It is then validated as the ingest validates
a city file, plus one rule: every territory must be one the sender may write (its token's
scope), reported with the line it first appears on.

Where things are kept (``Settings``): an accepted file is copied into
``uploads_active_dir`` as ``upload-<sender>-<name>`` (:func:`active_name`), which every
ingest reads beside the data directory (so the file need not be copied there, and stays
across ingests), and into the raw store by that ingest (its history: every version ever
accepted stays there, content-addressed). A refused file goes to the quarantine folder with
its report. ``uploads_dir/index.json`` lists every upload (:class:`UploadIndex`).

**A newer file replaces an older one** (:func:`replaced_and_conflicts`) when it comes from the
same sender under the same name, or when it carries every (indicator, territory) pair the
older one carries (the same city sending the same indicators again, under any name): the older
file leaves ``active/`` (it stays in the raw store and the index, ``replaced_by`` the newer
one), so a value is never read from two files. A newer file that overlaps an older one only in
part (some of its pairs, not all) is refused, naming the older upload: the city sends a file
covering it, or the same name (``--as``) to replace it whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from features.errors import Problem
from features.settings import Settings
from features.storage.atomic import atomic_write_bytes

#: The ingest reads the accepted uploads as files of this prefix (never a data-directory name).
UPLOAD_PREFIX = "upload-"
#: The source whose files a city may upload (the shared format).
UPLOADED_SOURCE = "city_indicators"
#: Longest file name accepted (characters, extension included).
MAX_NAME_CHARS = 100
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.csv", re.IGNORECASE)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SLUG = re.compile(r"[^a-z0-9]+")


class UploadRefused(ValueError):
    """An upload refused before its content is validated (name, size, type): nothing kept.

    ``kind``: ``name``, ``size`` or ``type``; ``details``: what helps fix it."""

    def __init__(self, kind: str, message: str, **details) -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details


def check_name(name: str | None) -> str:
    """The file name an upload is kept under, checked: raises :class:`UploadRefused` (kind
    ``name``) for an empty name, a control character, a folder or ``..`` (path traversal), a
    name over :data:`MAX_NAME_CHARS` characters, or anything but a plain ``.csv`` name."""
    name = "" if name is None else str(name)
    expected = (f"a plain .csv file name of at most {MAX_NAME_CHARS} characters: letters, "
                "digits, '.', '_' or '-', starting with a letter or a digit")

    def refuse(found: str) -> UploadRefused:
        return UploadRefused("name", f"file name refused: expected {expected}, found {found}",
                             expected=expected, found=found)

    if not name.strip():
        raise refuse("an empty name")
    control = _CONTROL.search(name)
    if control:
        raise refuse(f"a control character U+{ord(control.group()):04X}")
    if len(name) > MAX_NAME_CHARS:
        raise refuse(f"a name of {len(name)} characters")
    if "/" in name or "\\" in name or ".." in name:
        raise refuse(f"a path ({name!r}): no folder, no '..'")
    if not NAME_PATTERN.fullmatch(name):
        raise refuse(repr(name))
    return name


def sender_slug(sender: str) -> str:
    """The sender's name as it appears in its files' names (lower-case letters and digits,
    ``-`` between words, at most 40 characters; ``sender`` when nothing is left)."""
    return _SLUG.sub("-", sender.lower()).strip("-")[:40].strip("-") or "sender"


def active_name(sender: str, name: str) -> str:
    """The name under which the ingest reads the accepted upload ``name`` of ``sender``."""
    return f"{UPLOAD_PREFIX}{sender_slug(sender)}-{name}"


def active_files(settings: Settings) -> list[Path]:
    """The accepted uploads in force, in name order (what each ingest reads beside the data
    directory)."""
    folder = settings.uploads_active_dir
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{UPLOAD_PREFIX}*") if p.is_file()
                  and NAME_PATTERN.fullmatch(p.name))


def uploaded(settings: Settings, source) -> list[Path]:
    """The files of ``source`` the ingest reads beside the data directory: the accepted
    uploads in force for the city source (:data:`UPLOADED_SOURCE`), none for the others."""
    return active_files(settings) if source.name == UPLOADED_SOURCE else []


@contextlib.contextmanager
def locked(settings: Settings) -> Iterator[None]:
    """One upload at a time per home (an exclusive lock on ``uploads_dir/.lock``): its
    validation, the index and the ingest it triggers are never interleaved with another's."""
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.uploads_dir / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class UploadIndex:
    """``uploads_dir/index.json``: one record per upload, newest last. A record: ``id``,
    ``name``, ``sender``, ``role``, ``status`` (``active``, ``replaced``, ``refused``),
    ``received_at``, ``size``, ``sha256``, ``file`` (its name in ``active/``), ``rows``,
    ``indicators``, ``territories``, ``pairs`` ((indicator, territory) it carries),
    ``replaces``/``replaced_by`` (ids), ``vintage_id`` (the vintage it made),
    ``problems`` (how many), ``quarantine`` (the folder of a refused file)."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.uploads_dir / "index.json"

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        return json.loads(self.path.read_text(encoding="utf-8"))["uploads"]

    def save(self, records: list[dict]) -> None:
        text = json.dumps({"uploads": records}, ensure_ascii=False, indent=1)
        atomic_write_bytes(self.path, text.encode("utf-8"))

    def active(self) -> list[dict]:
        return [r for r in self.records() if r["status"] == "active"]


def pairs_of(frame) -> set[tuple[str, str]]:
    """The (indicator, territory) pairs of a validated city file's tidy frame."""
    return set(map(tuple, frame[["indicator", "territory"]].drop_duplicates()
                   .itertuples(index=False, name=None)))


def replaced_and_conflicts(active: Iterable[dict], sender: str, name: str,
                           pairs: set[tuple[str, str]], file: str
                           ) -> tuple[list[dict], list[Problem]]:
    """Which uploads in force a new accepted file replaces (same sender and name, or every
    pair of theirs in the new file), and one problem per upload it overlaps only in part
    (module docstring).

    A record with ``fixed`` set (a data-directory file, the operator's) is never replaced:
    any overlap with it is a problem."""
    replaced, problems = [], []
    for record in active:
        theirs = {tuple(p) for p in record["pairs"]}
        fixed = record.get("fixed", False)
        same = record["sender"] == sender and record["name"] == name
        if not fixed and (same or (theirs and theirs <= pairs)):
            replaced.append(record)
            continue
        shared = sorted(theirs & pairs)
        if not shared:
            continue
        indicator, territory = shared[0]
        expected = (f"no (indicator, territory) of the data directory's {record['name']} "
                    "(the operator's file; ask them to remove it)" if fixed else
                    f"every (indicator, territory) of upload {record['id']} ('{record['name']}' "
                    f"of {record['sender']}, {len(theirs)} pairs) or none of them; to replace "
                    "it whole, send the file under the same name")
        problems.append(Problem(file, expected, f"{len(shared)} of them, e.g. '{indicator}' "
                                f"for '{territory}' (a value would come from two files)",
                                column="indicator"))
    return replaced, problems
