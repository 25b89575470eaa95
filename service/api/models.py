"""``/api/v1/models``: the model registry (names, versions, settings) and the leaderboard of
backtest scores written by the weekly ``backtest`` job."""

from __future__ import annotations

import json

from apiflask import APIBlueprint, Schema, fields

from service.api.cache import cached
from service.api.formats import render
from service.api.paging import ListQuery, PageInfo, render_page
from service.api.state import state
from service.errors import ApiError, not_found

PREFIX = "models"
bp = APIBlueprint("models", __name__, tag="models")


class ModelVersion(Schema):
    version = fields.String(required=True)
    kind = fields.String(required=True)
    params = fields.Dict(required=True)
    description = fields.String(required=True)
    created_at = fields.String(required=True)


class ModelOut(Schema):
    name = fields.String(required=True)
    kind = fields.String(required=True)
    current_version = fields.String(required=True)
    description = fields.String(required=True)
    versions = fields.List(fields.Nested(ModelVersion), required=True)


class ModelList(Schema):
    items = fields.List(fields.Nested(ModelOut), required=True)
    pagination = fields.Nested(PageInfo, required=True)


class LeaderboardOut(Schema):
    target = fields.String(required=True)
    frequency = fields.String(required=True)
    level = fields.String(required=True)
    vintage_id = fields.String(required=True)
    created_at = fields.String(required=True)
    forecast_dates = fields.List(fields.String(), required=True)
    models = fields.List(fields.Dict(), required=True, metadata={
        "description": "per model: mean WIS, relative WIS vs baseline, 50 %/95 % coverage"})


def _registry():
    from models.registry import get_registry

    return get_registry(state().settings)


def _model(registry, name: str) -> dict:
    current = registry.get(name)
    versions = [registry.get(name, v) for v in registry.versions(name)]
    return {"name": name, "kind": current.kind, "current_version": current.version,
            "description": current.description,
            "versions": [{"version": s.version, "kind": s.kind, "params": s.params,
                          "description": s.description, "created_at": s.created_at}
                         for s in versions]}


@bp.get("")
@bp.input(ListQuery, location="query")
@bp.output(ModelList)
@bp.doc(summary="The model registry")
@cached
def list_models(query_data: dict):
    registry = _registry()
    rows = [_model(registry, n) for n in registry.names()]
    return render_page(rows, query_data, columns=["name", "kind", "current_version", "description"],
                       filename="vigie_models")


@bp.get("/leaderboard")
@bp.output(LeaderboardOut)
@bp.doc(summary="Backtest scores of the models (weekly backtest job)")
@cached
def leaderboard():
    path = state().settings.leaderboard_file
    if not path.exists():
        raise ApiError(404, "no_leaderboard", "no backtest has run yet: the weekly 'backtest' "
                       "job writes the leaderboard (POST /api/v1/jobs/backtest/run)")
    payload = json.loads(path.read_text())
    payload.setdefault("vintage_id", "")
    return render(payload, {})


@bp.get("/<name>")
@bp.output(ModelOut)
@bp.doc(summary="One model and its versions")
@cached
def get_model(name: str):
    registry = _registry()
    if name not in registry.names():
        raise not_found(f"no model named {name!r}", known=registry.names())
    return render(_model(registry, name), {})
