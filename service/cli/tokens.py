"""``token create|list|revoke``: API tokens (only their hash is stored)."""

from __future__ import annotations

import argparse
import sys

from service.auth import ROLES


def register(subparsers: argparse._SubParsersAction) -> None:
    token = subparsers.add_parser("token", help="create, list or revoke API tokens")
    sub = token.add_subparsers(dest="token_command", metavar="SUBCOMMAND")
    create = sub.add_parser("create", help="create a token and print it (shown once)")
    create.add_argument("--role", required=True, choices=ROLES[1:])
    create.add_argument("--name", required=True, help="who or what uses it")
    from service.cli import add_territory_option

    add_territory_option(create, "role city only (required there): the communes (INSEE code) "
                                 "and EPCI (SIREN code; covers its member communes) the token "
                                 "reads unsuppressed and may write: --territory 35238 "
                                 "243500139 or --territory 35238 --territory 243500139")
    create.set_defaults(func=cmd_create)
    listing = sub.add_parser("list", help="list tokens (never their secret)")
    listing.set_defaults(func=cmd_list)
    revoke = sub.add_parser("revoke", help="revoke a token by id (every server refuses it "
                                           "from its next request)")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_revoke)
    token.set_defaults(func=lambda args: token.print_help() or 2)


def _settings():
    from features.settings import Settings

    return Settings.from_env()


def cmd_create(args: argparse.Namespace) -> int:
    from service.usecases.tokens import create_token

    try:
        secret = create_token(_settings(), args.name, args.role,
                              territories=args.territory)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(secret)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from service.usecases.tokens import list_tokens

    for t in list_tokens(_settings()):
        state = "revoked" if t["revoked_at"] else "active"
        scope = ",".join(t["territories"]) if t["territories"] else "-"
        print(f"{t['id']:>4}  {t['prefix']}…  {t['role']:<12} {state:<8} {t['name']}  "
              f"territories={scope}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from service.usecases.tokens import revoke_token

    if not revoke_token(_settings(), args.id):
        print(f"error: no active token {args.id}", file=sys.stderr)
        return 1
    return 0
