"""Finishing touches on the generated OpenAPI document.

apiflask documents schemas and parameters from the route decorators; this adds what they cannot
know: which role each operation needs (from :func:`service.auth.requires`), the CSV variant of
list answers, and the error answers every operation can give (400 invalid input, 401 bad
token, 429 rate limited, 503 no data yet), all in the one ``{code, message, details}`` shape.
"""

from __future__ import annotations

import re
import warnings

from apiflask import APIFlask

from service.errors import ERROR_SCHEMA

ERROR_DESCRIPTIONS = {
    "400": "Invalid input (see details)", "401": "Missing, unknown or revoked token",
    "403": "The token's role may not do this", "404": "Not found",
    "429": "Rate limit exceeded", "503": "No data yet (no cube vintage or forecast run)",
}


def _error_response(code: str) -> dict:
    return {"description": ERROR_DESCRIPTIONS[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


# apiflask registers an output schema once as a response and once as a nested field; both
# entries have the same name and content, so apispec's "added twice" warning is noise here.
warnings.filterwarnings("ignore", message=".*has already been added to the spec.*",
                        category=UserWarning, module="apispec.*")


def init_app(app: APIFlask) -> None:
    @app.spec_processor
    def _process(spec: dict) -> dict:
        roles, bodies = {}, {}  # bodies: a request body apiflask cannot see (uploads)
        for rule in app.url_map.iter_rules():
            view = app.view_functions.get(rule.endpoint)
            role = getattr(view, "_vigie_role", None)
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            for method in rule.methods or ():
                roles[(path, method.lower())] = role
                bodies[(path, method.lower())] = getattr(view, "_vigie_request_body", None)
        spec.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        for path, operations in spec.get("paths", {}).items():
            for method, op in operations.items():
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                if bodies.get((path, method)):
                    op["requestBody"] = bodies[(path, method)]
                responses = op.setdefault("responses", {})
                # apiflask's own error entries point at its schema names: use ours everywhere.
                for code in list(responses):
                    if code in ERROR_DESCRIPTIONS or code == "422":
                        responses.pop(code)
                codes = ["400", "401", "429"]
                if path.startswith("/api/v1/"):
                    codes += ["404", "503"]
                role = roles.get((path, method))
                if role:
                    codes.append("403")
                    op["security"] = [{"BearerAuth": []}]
                    op["description"] = (op.get("description", "") +
                                         f"\n\nNeeds a token with role `{role}` or above.").strip()
                else:
                    op["security"] = [{}, {"BearerAuth": []}]
                for code in codes:
                    responses[code] = _error_response(code)
                params = [p.get("name") for p in op.get("parameters", [])]
                if "format" in params:
                    ok = responses.get("200")
                    if ok is not None:
                        ok.setdefault("content", {})["text/csv"] = {"schema": {"type": "string"}}
        return spec
