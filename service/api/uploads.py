"""``/api/v1/uploads``: a city sends its file in Vigie's shared format; the list of uploads.

``POST`` (role ``city`` or above; a ``city`` token writes only its territories) takes the file
as ``multipart/form-data`` (field ``file``; optional field ``name``, else the file's own name)
or as the body itself (``text/csv``, UTF-8; ``?name=`` gives its name). What happens to it
(checks, the raw store, the new vintage, the quarantine, what replaces what) is the use case's,
:mod:`service.usecases.uploads`; this blueprint reads the body and renders the report.
"""

from __future__ import annotations

from apiflask import APIBlueprint, Schema, fields
from flask import request, url_for

from features.uploads import MAX_NAME_CHARS, UploadsBusy
from service.api.formats import json_response
from service.api.paging import PageQuery, paged
from service.api.state import state
from service.auth import current_principal, requires
from service.errors import ApiError
from service.usecases.uploads import UploadRefused, list_uploads, upload_file

PREFIX = "uploads"
bp = APIBlueprint("uploads", __name__, tag="uploads")

#: Bytes a multipart body may carry beyond the file (boundaries, part headers, the name).
MULTIPART_SLACK = 16 * 1024
#: The body types an upload comes in.
TYPES = ("multipart/form-data", "text/csv")
STATUS = {"name": (400, "invalid_file_name"), "size": (413, "too_large"),
          "type": (415, "unsupported_media_type")}

POST_DOC = f"""A city file in Vigie's shared format (Table Schema
`features/schemas/city_indicators.schema.json`: `territory_code, date, indicator, value, unit,
source[, frequency, aggregation, licence]`; territory codes: communes, including 2A/2B, and
EPCI SIREN codes of the registry), sent as `multipart/form-data` (field `file`, optional field
`name`) or as a `text/csv` body (UTF-8) with `?name=FILE.csv`.

The file is validated as the ingest validates a city file, plus the sender's scope: a `city`
token may only write its own territories (its communes, its EPCIs and their communes); each
territory outside it is named with the line it first appears on. **Valid** (202): the file is
kept (`uploads/active` of Vigie's store, `$VIGIE_HOME` or `VIGIE_STORE_URL`, read by every
ingest beside the data directory, and its copy under `uploads/raw`), an `ingest` run is queued
for the scheduler (the answer gives `job_id` and `job_url`, `/api/v1/jobs/runs/<id>`, for
admins; the request does not wait for it), and it replaces the older uploads of the same sender
under the same name, and those whose every (indicator, territory) it carries (a partial
overlap is refused: a value never comes from two files). Its record in `GET /api/v1/uploads`
says what became of it: `accepted` (waiting for its ingest), then `active` with the
`vintage_id` that ingest made, or `undone` with the ingest's reason in `message` (the uploads
it replaced are back in force). **Refused** (400 `invalid_file`, or 403 `out_of_scope` when some
row is outside the token's territories): every problem with its line, column,
expected and found in `details.report.problems`; the file is quarantined with its report and
nothing served changes (the oldest quarantined files are dropped beyond
`VIGIE_UPLOAD_QUARANTINE_MAX_FILES` / `_MAX_BYTES`). File names: a plain `.csv` name of at
most 100 letters, digits, `.`, `_`, `-` (400 `invalid_file_name` otherwise: folders, `..`,
control characters). Files over
`VIGIE_UPLOAD_MAX_BYTES` (default 10 MiB): 413 (from the `Content-Length`, before a byte is
read, when the body is over the limit plus {MULTIPART_SLACK // 1024} KiB of multipart
envelope). Other types than {' or '.join(TYPES)}, or a charset other than UTF-8: 415. Each
upload writes an audit row (`event` `upload`)."""

LIST_DOC = ("Every upload, newest first: `accepted` (its ingest queued, `job_id`), `active` "
            "(in force, `vintage_id` the vintage its ingest made), `replaced` by a newer one, "
            "`undone` (the ingest did not take it: `message`), `refused` (`quarantine`: its "
            "folder, with the file and its report). An admin sees every sender's; other roles "
            "their own.")


def _error(description: str) -> dict:
    return {"description": description, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


#: The request body, for the OpenAPI document (read by service.api.openapi).
REQUEST_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "the CSV file (UTF-8)"},
            "name": {"type": "string", "maxLength": MAX_NAME_CHARS,
                     "description": "the name it is kept under (default: the file part's name)"}}}},
    "text/csv": {"schema": {"type": "string", "description": "the CSV text (UTF-8); its name "
                                                             "in ?name="}}}}


class UploadQuery(Schema):
    # Bounded in the document (every query parameter is); the use case still names a longer one.
    name = fields.String(metadata={
        "maxLength": MAX_NAME_CHARS,
        "description": "the file's name, for a text/csv body (a plain .csv name, at most 100 "
                       "characters)"})


class UploadReport(Schema):
    class Meta:
        unknown = "include"

    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "accepted or refused"})
    vintage_id = fields.String(allow_none=True, metadata={
        "description": "the vintage the upload made (null until its ingest has run)"})
    job_id = fields.Integer(allow_none=True, metadata={
        "description": "the ingest run queued for this upload"})
    job_url = fields.String(allow_none=True, metadata={
        "description": "that run, /api/v1/jobs/runs/<id> (admins)"})
    problems = fields.List(fields.Dict(), required=True, metadata={
        "description": "every problem: file, line, column, expected, found"})


def _body_limit() -> int:
    return state().settings.upload_max_bytes + MULTIPART_SLACK


# Read by service.guards before the body is read (this route's own size limit) and by
# service.api.openapi (the request body apiflask cannot see).
def _upload_route(view):
    view._vigie_body_limit = _body_limit
    view._vigie_request_body = REQUEST_BODY
    return view


def _file_of_request(query_name: str | None) -> tuple[str | None, bytes]:
    """(the name the file is sent under, its bytes), from a multipart or a text/csv body."""
    limit = _body_limit()
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"the file is over {limit - MULTIPART_SLACK} bytes",
                       {"limit_bytes": limit - MULTIPART_SLACK,
                        "content_length": request.content_length})
    request.max_content_length = limit  # a chunked body is cut there (413)
    mimetype = request.mimetype
    charset = (request.mimetype_params.get("charset") or "utf-8").lower()
    if mimetype not in TYPES or charset not in ("utf-8", "utf8"):
        found = request.content_type or "no Content-Type"
        raise ApiError(415, "unsupported_media_type",
                       f"send the file as {' or '.join(TYPES)} (UTF-8); found {found}"[:300],
                       {"accepted": list(TYPES)})
    if mimetype == "text/csv":
        return query_name, request.get_data(cache=False)
    parts = [(field, part) for field in request.files for part in request.files.getlist(field)]
    if len(parts) > 1:  # one file per upload: a second one would be dropped unread
        raise ApiError(400, "invalid_input", "send one file per upload (field 'file'); found "
                       f"{len(parts)} file parts", {"fields": [f for f, _ in parts][:10]})
    sent = request.files.get("file")
    if sent is None:
        raise ApiError(400, "invalid_input", "a multipart upload needs its file in the field "
                       "'file'", {"fields": sorted(request.files)[:10]})
    return request.form.get("name") or sent.filename, sent.read()


@bp.post("")
@bp.input(UploadQuery, location="query")
@bp.output(UploadReport, status_code=202,
           description="Accepted: the validation report and the ingest run queued")
@bp.doc(summary="Send a city file in the shared format (validated, kept, ingest queued)",
        description=POST_DOC,
        responses={413: _error("File over VIGIE_UPLOAD_MAX_BYTES"),
                   503: _error("The uploads lock stayed taken (an ingest or another upload): "
                               "try again"),
                   415: _error("Neither multipart/form-data nor text/csv in UTF-8")})
@requires("city")
@_upload_route
def post_upload(query_data: dict):
    name, content = _file_of_request(query_data.get("name"))
    principal = current_principal()
    try:
        report = upload_file(state().settings, content, name, sender=principal.name,
                             role=principal.role, territories=principal.territories,
                             actor=f"token:{principal.name}", wait=False)
    except UploadRefused as exc:
        status, code = STATUS[exc.kind]
        raise ApiError(status, code, str(exc)[:500], exc.details) from exc
    except UploadsBusy as exc:
        raise ApiError(503, "busy", str(exc)) from exc
    if report["status"] == "accepted":
        report["job_url"] = url_for("jobs.get_job_run", run_id=report["job_id"])
        response = json_response(report, status=202)
        response.headers["Location"] = report["job_url"]
        return response
    scope = bool(report["out_of_scope"])
    raise ApiError(403 if scope else 400, "out_of_scope" if scope else "invalid_file",
                   (f"rows for territories outside this token's scope: "
                    f"{', '.join(report['out_of_scope'])}" if scope else
                    f"the file was refused ({len(report['problems'])} problem(s)); "
                    "it is quarantined and nothing served changed"), {"report": report})


@bp.get("")
@bp.input(PageQuery, location="query")
@bp.doc(summary="Uploads, newest first (admins: every sender's, with refused files)",
        description=LIST_DOC)
@requires("city")
def get_uploads(query_data: dict):
    principal = current_principal()
    sender = None if principal.has("admin") else principal.name
    return json_response(paged({"rows": list_uploads(state().settings, sender)}, query_data))
