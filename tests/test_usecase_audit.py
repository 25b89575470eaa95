"""Use cases own their audit entry: one row per token created or revoked and per prune
(never for a dry run), whoever calls them (CLI, job, API); the token's secret is never in it."""

from __future__ import annotations

import pytest

from features.catalog import get_engine
from features.settings import Settings
from service.audit import query


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env(home=str(tmp_path / "home"),
                             database_url=f"sqlite:///{tmp_path}/vigie.sqlite")


def test_token_use_cases_write_one_audit_row_each(settings):
    from service.usecases.tokens import create_token, list_tokens, revoke_token

    secret = create_token(settings, "cellule-69", "analyst")
    [token] = list_tokens(settings)
    assert revoke_token(settings, token["id"], actor="admin:test")
    assert not revoke_token(settings, token["id"])
    rows, total = query(get_engine(settings.database_url))
    assert total == 3
    assert [(r["event"], r["actor"]) for r in rows] == [
        ("token_revoked", "cli"), ("token_revoked", "admin:test"), ("token_created", "cli")]
    assert rows[2]["details"] == {"name": "cellule-69", "token_role": "analyst"}
    assert [r["details"]["revoked"] for r in rows[:2]] == [False, True]
    assert all(secret not in str(r) for r in rows)


def test_prune_is_audited_but_not_its_preview(settings):
    from service.usecases.maintenance import prune

    prune(settings, dry_run=True)
    assert query(get_engine(settings.database_url), event="prune")[1] == 0
    plan = prune(settings, actor="job:prune")
    [row], total = query(get_engine(settings.database_url), event="prune")
    assert total == 1 and row["actor"] == "job:prune"
    assert row["details"]["vintages"] == plan.summary()["vintages"]
