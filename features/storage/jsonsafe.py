"""Values made JSON-safe: JSON has no NaN or infinity, and knows no numpy type and no date.

* :func:`jsonable`: a copy holding JSON types only, for files and database JSON columns
  (PostgreSQL's JSON rejects NaN): dict keys as text, tuples and numpy arrays as lists, numpy
  scalars as Python ones, NaN and infinities as null, anything else as its ``str()``;
* :func:`dumps`: ``json.dumps`` of :func:`jsonable` (``allow_nan=False``: nothing unsafe left);
* :func:`scalar`: one value of an answer or a CSV cell: NaN and infinities to None, numpy to
  Python, dates to ISO text, anything else unchanged;
* :func:`plain`: what a JSON round trip gives back (``default=str``: unknown objects as their
  ``str()``; NaN is kept: use :func:`jsonable` where it must not be).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of ``value`` (see the module docstring)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps(jsonable(value), allow_nan=False, **kwargs)``."""
    return json.dumps(jsonable(value), allow_nan=False, **kwargs)


def scalar(value: Any) -> Any:
    """One value for a JSON answer or a CSV cell: NaN/inf → None, numpy → Python, dates →
    ISO text; other values unchanged."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def plain(value: Any) -> Any:
    """``value`` after a JSON round trip: JSON types only, unknown objects as ``str()``."""
    return json.loads(json.dumps(value, default=str))
