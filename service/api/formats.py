"""Answer formats: JSON, and CSV for spreadsheets (French Excel's dialect with ``sep=;``).

:func:`render` gives a payload as JSON, or its rows as CSV when the validated query asks
``format=csv``; :class:`FormatQuery` is the query schema of those options. Text cells of a CSV
never start a formula (:mod:`service.csv_safety`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from apiflask import Schema, fields
from apiflask.validators import OneOf
from flask import Response

from features.storage import jsonsafe
from service.csv_safety import neutralise
from service.errors import bad_request


class FormatQuery(Schema):
    format = fields.String(load_default="json", validate=OneOf(["json", "csv"]),
                           metadata={"description": "json (default) or csv"})
    sep = fields.String(load_default=None, validate=OneOf([",", ";"]),
                        metadata={"description": "CSV separator; ';' (French Excel) also "
                                                 "switches the decimal mark to ','"})
    decimal = fields.String(load_default=None, validate=OneOf([".", ","]),
                            metadata={"description": "CSV decimal mark (default '.' with "
                                                     "sep=',' and ',' with sep=';')"})


CSV_CONTENT = {"text/csv": {"schema": {"type": "string"}}}


#: JSON-safe scalars: NaN → None, numpy → Python, dates → ISO strings (the storage foundation's).
clean = jsonsafe.scalar


def json_response(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str,
                      allow_nan=False)
    return Response(body, status=status, mimetype="application/json")


def _csv_value(value: Any, decimal: str) -> str:
    value = clean(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        text = repr(round(value, 6))
        return text.replace(".", ",") if decimal == "," else text
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    # Text (a city's unit, a name…): never a formula in the reader's spreadsheet.
    return neutralise(str(value))


def csv_response(rows: Iterable[dict], columns: Sequence[str], filename: str,
                 sep: str | None = None, decimal: str | None = None) -> Response:
    """CSV of ``rows``; ``sep=';'`` gives French Excel's dialect (decimal comma, UTF-8 BOM).

    Text cells starting with ``= + - @``, tab or CR get a leading apostrophe
    (:mod:`service.csv_safety`); numbers, the exporter's own, stay numbers."""
    sep = sep or ","
    decimal = decimal or ("," if sep == ";" else ".")
    if sep == decimal:
        raise bad_request("the CSV separator and the decimal mark must differ",
                          sep=sep, decimal=decimal)
    out = io.StringIO()
    if sep == ";":
        out.write("\ufeff")  # Excel reads UTF-8 (accents) only with a byte-order mark
    writer = csv.writer(out, delimiter=sep, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row.get(c), decimal) for c in columns])
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


def render(payload: dict, query: dict, *, rows_key: str = "items",
           columns: Sequence[str] | None = None, filename: str = "vigie") -> Response:
    """JSON of ``payload``, or CSV of ``payload[rows_key]`` when ``format=csv``."""
    if query.get("format") == "csv":
        rows = payload.get(rows_key) or []
        columns = columns or (list(rows[0]) if rows else [])
        return csv_response(rows, columns, filename, query.get("sep"), query.get("decimal"))
    return json_response(payload)
