"""What every request goes through before any view runs, and what every answer carries.

Before the view (``before_request``, after the token is resolved and the rate limit counted):

1. **Control characters.** A C0 control (CR, LF, NUL, tab…), DEL or a C1 control anywhere in
   the path or in a query parameter's name or value is a 400 ``invalid_input``: such text is
   never a territory code, a date or a name, and must never reach a header or a log line.
2. **Role.** A route decorated with :func:`service.auth.requires` answers 401/403 *here*, before
   its body is read or validated: an anonymous caller never makes the server parse anything.
3. **Body size.** A body over ``MAX_CONTENT_LENGTH`` (1 MiB) is a 413 ``too_large``, from its
   ``Content-Length`` before a byte is read (a chunked body is cut at the limit by Werkzeug).
4. **JSON depth.** A JSON body nested deeper than ``MAX_JSON_DEPTH`` (32) is a 400, counted on
   the raw bytes by a linear scan before the JSON parser (whose recursion it would exhaust)
   sees it.

After the view: security headers on every answer (:func:`security_headers`).
"""

from __future__ import annotations

import base64
import hashlib
import re

import numpy as np
from flask import Flask, current_app, request

from service.auth import check_role
from service.errors import ApiError

#: C0 controls, DEL and C1 controls.
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")

_ESCAPES = re.compile(rb"\\.", re.S)
_STRINGS = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = np.zeros(256, dtype=np.int8)
_DEPTH_STEP[list(b"[{")] = 1
_DEPTH_STEP[list(b"]}")] = -1

#: Content-Security-Policy of every answer. Scripts only from this origin (plus the hashes of
#: the inline scripts an HTML page actually carries, e.g. the Swagger UI page's start-up
#: script); inline *styles* are allowed (plotly and Swagger UI set style attributes).
CSP = ("default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc\s*=)([^>]*)>(.*?)</script>", re.S | re.I)


def init_app(app: Flask) -> None:
    """Register :func:`check_request` and :func:`security_headers` (call after the token and
    rate-limit hooks, before the response cache's fast path)."""
    app.config.setdefault("MAX_CONTENT_LENGTH", 1024 * 1024)
    app.config.setdefault("MAX_JSON_DEPTH", 32)
    app.before_request(check_request)
    app.after_request(security_headers)


def find_control(text: str) -> str | None:
    """The first control character of ``text`` as ``U+XXXX``, or None."""
    found = CONTROL_CHARS.search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def check_request() -> None:
    """``before_request``: control characters, role, body size and JSON depth (module doc)."""
    bad = find_control(request.path)
    if bad:
        raise ApiError(400, "invalid_input", "the path holds a control character",
                       {"where": "path", "character": bad})
    for key, values in request.args.lists():
        for text in (key, *values):
            bad = find_control(text)
            if bad:
                raise ApiError(400, "invalid_input",
                               "a query parameter holds a control character",
                               {"where": f"query parameter {key!r}"[:80], "character": bad})
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    role = getattr(view, "_vigie_role", None)
    if role:
        check_role(role)
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    own_limit = getattr(view, "_vigie_body_limit", None)  # a route's own (uploads)
    limit = own_limit() if own_limit else current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"the request body is over {limit} bytes",
                       {"limit_bytes": limit, "content_length": request.content_length})
    if request.is_json:
        max_depth = int(current_app.config.get("MAX_JSON_DEPTH") or 32)
        depth = json_depth(request.get_data(cache=True))
        if depth > max_depth:
            raise ApiError(400, "invalid_input", f"the JSON body is nested deeper than "
                           f"{max_depth} levels", {"limit_depth": max_depth})


def json_depth(data: bytes) -> int:
    """Deepest nesting of arrays and objects in a JSON text, without parsing it: escapes and
    strings are removed (linear regular expressions), the brackets left are summed. Malformed
    text gets some number; the parser refuses it afterwards anyway."""
    if not data:
        return 0
    structural = _STRINGS.sub(b"", _ESCAPES.sub(b"", data)).translate(None, _NOT_BRACKETS)
    if not structural:
        return 0
    steps = _DEPTH_STEP[np.frombuffer(structural, dtype=np.uint8)].astype(np.int32)
    return int(np.cumsum(steps).max())


def csp_for(response) -> str:
    """The CSP of an answer: :data:`CSP` with the hashes of its inline scripts (HTML only)."""
    hashes = ""
    if (response.mimetype == "text/html" and not response.direct_passthrough
            and not response.is_streamed):
        body = response.get_data(as_text=True)
        found = []
        for attrs, script in _INLINE_SCRIPT.findall(body):
            if "application/json" in attrs.lower() or not script.strip():
                continue  # a data block: never executed
            digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
            found.append(f" 'sha256-{digest}'")
        hashes = "".join(dict.fromkeys(found))
    return CSP.format(hashes=hashes)


def security_headers(response):
    """``after_request``: CSP, nosniff, frame and referrer policies on every answer."""
    response.headers.setdefault("Content-Security-Policy", csp_for(response))
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
