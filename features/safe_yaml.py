"""YAML written by people (scenario files): read with bounds on size, nesting and aliases.

PyYAML's safe loader builds only plain data, but it still lets a short file cost without
limit: anchors and aliases (``&a`` / ``*a``) let ten lines stand for billions of nodes (the
"billion laughs"), and deep nesting costs quadratic scanning time, then recursion. Here a file
over :data:`MAX_YAML_BYTES` is refused before it is parsed, and anchors, aliases and nesting
deeper than :data:`MAX_YAML_DEPTH` are refused while the text is scanned and composed, before
anything is built. Only PyYAML is imported, so that a command line can check a file at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: A scenario file is a few kilobytes.
MAX_YAML_BYTES = 256 * 1024
#: Deepest nesting of mappings and lists (a scenario needs 5: interventions[i].effect.x).
MAX_YAML_DEPTH = 32


class YamlFileError(ValueError):
    """A file that is too large, not UTF-8, or not readable."""


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without anchors or aliases, and at most :data:`MAX_YAML_DEPTH`
    levels of block or flow nesting."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None, None, "YAML anchors and aliases (&name, *name) are not allowed here: "
                "write each value out", event.start_mark)
        depth = getattr(self, "_bounded_depth", 0) + 1
        if depth > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        self._bounded_depth = depth
        try:
            return super().compose_node(parent, index)
        finally:
            self._bounded_depth = depth - 1

    def fetch_flow_collection_start(self, token_class):
        # Checked in the scanner too: it looks ahead up to 1,024 characters per open bracket
        # for a possible key, so a line of 1,000 '[' costs seconds before the composer would
        # see the 33rd level.
        if self.flow_level >= MAX_YAML_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} "
                                            "levels", self.get_mark())
        super().fetch_flow_collection_start(token_class)


def read_text(path: str | Path, max_bytes: int = MAX_YAML_BYTES) -> str:
    """The UTF-8 text of ``path``, refused (:class:`YamlFileError`) over ``max_bytes``;
    never reads more than ``max_bytes + 1`` bytes."""
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise YamlFileError(f"cannot read: {exc}") from exc
    if len(data) > max_bytes:
        raise YamlFileError(f"larger than {max_bytes // 1024} KiB; a scenario file is a few "
                            "kilobytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"not UTF-8 text: {exc}") from exc


def load(text: str, loader: type[BoundedLoader] = BoundedLoader) -> Any:
    """Parse ``text`` with ``loader`` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=loader)  # a SafeLoader subclass


def check_file(path: str | Path) -> str | None:
    """What makes ``path`` unreadable as bounded YAML (size, encoding, syntax, aliases,
    nesting), or None when it parses (or cannot be opened: the caller reports that)."""
    if not Path(path).is_file():
        return None
    try:
        load(read_text(path))
    except YamlFileError as exc:
        return str(exc)
    except yaml.YAMLError as exc:
        return f"not valid YAML: {exc}"
    return None
