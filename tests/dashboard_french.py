"""Is a dashboard text French? Giveaways of English, ISO dates and decimal points.

Used by ``tests/test_dashboard.py`` (server-rendered pages and the page data the scripts
write into pages) and ``tests/test_dashboard_browser.py`` (what the browser shows once the
scripts have run). Identifiers are not prose: ``<code>`` elements, URLs, version numbers
("version 1.3") and licence names ("Licence Ouverte 2.0", "CC BY 4.0") are left out.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

#: Words that give English away (word boundaries, case-insensitive).
GIVEAWAYS = ("the", "of", "and", "is", "are", "with", "for", "yet", "not found", "forecasts?",
             "unavailable", "available", "error", "failed", "loading", "unknown", "missing",
             "please", "weekly", "daily", "beds?", "department", "region", "no data",
             "no (ensemble|forecast|cube)", "run", "queued", "running", "finished", "nothing",
             "requires?", "token needed", "level", "scenario", "lockdown", "curfew", "schools?",
             "as_of", "from", "until", "over", "this", "that", "which")
_GIVEAWAY = re.compile(r"\b(" + "|".join(GIVEAWAYS) + r")\b", re.IGNORECASE)
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_DECIMAL_POINT = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
#: Thousands after a plain or a no-break space (French: the narrow no-break space, U+202F).
_THOUSANDS = re.compile(r"(?<![\w.,/])\d{1,3}(?:[ \u00a0]\d{3})+(?![\w/])")
_ALLOWED = re.compile(
    r"https?://\S+|\bversions?\b[^\d\n]{0,16}[\d.]+(,\s*[\d.]+)*|\bv\d+(\.\d+)+|"
    r"Licence Ouverte \d\.\d|CC BY(-SA)? \d\.\d|\bODbL\b|\bR\(t\)|@svg-maps/\S+|"
    r"\b[\w/-]+\.(md|yaml|csv|json)\b", re.IGNORECASE)


def problems(text: str) -> list[str]:
    """What in ``text`` is not French: ``["english: 'the' in …", "iso date: …", …]``."""
    text = _ALLOWED.sub(" ", text)
    out = []
    for kind, pattern in (("english", _GIVEAWAY), ("iso date", _ISO_DATE),
                          ("decimal point", _DECIMAL_POINT), ("thousands", _THOUSANDS)):
        for m in pattern.finditer(text):
            start, end = max(0, m.start() - 40), min(len(text), m.end() + 40)
            out.append(f"{kind}: {m.group(0)!r} in …{text[start:end]}…")
    return out


class _Visible(HTMLParser):
    """Text a reader sees or hears: element text (not script, style, code), and the
    ``aria-label``, ``title``, ``alt`` and ``placeholder`` attributes."""

    SKIP = {"script", "style", "code", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.depth += 1
        for name, value in attrs:
            if name in ("aria-label", "title", "alt", "placeholder") and value:
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if not self.depth and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return "\n".join(parser.parts)


#: Keys of the dashboard's page data whose values the scripts write into pages as text.
DISPLAYED = {"reason", "message", "label", "title", "unit", "note", "text", "missing",
             "estimated", "estimate_note", "capacity_label", "capacity_note", "territory_name",
             "source", "licence", "level_label", "period_label", "pending", "met", "r_now",
             "r_now_admissions", "levers", "description", "levels", "name"}


def displayed_strings(value: Any, key: str | None = None) -> list[str]:
    """Every string under a :data:`DISPLAYED` key of a page-data document."""
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out += displayed_strings(v, k if k in DISPLAYED else (key if key in DISPLAYED
                                                                   and k.isdigit() else None))
    elif isinstance(value, list):
        for v in value:
            out += displayed_strings(v, key)
    elif isinstance(value, str) and key in DISPLAYED:
        out.append(value)
    return out
