"""`clearbg-admin` (or `python -m service.admin`): accounts, credits, API keys and the ledger,
straight on the database the server uses (CLEARBG_DATABASE_URL, SQLite or PostgreSQL; or
--database-url). Safe while servers run: every change is one transaction, like theirs.

Examples:
  clearbg-admin create-account "Acme" --subscription 100 --free-calls 50 --with-key
  clearbg-admin add-credits 2 --payg 25 --note invoice-1042
  clearbg-admin create-key 2
  clearbg-admin revoke-key 7
  clearbg-admin ledger 2 --limit 20
  clearbg-admin create-user ana@example.com --account 2   # prints a one-time sign-in link
  clearbg-admin sign-in-link ana@example.com               # a new link (a forgotten password)
Add --json before the command for machine-readable output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from service.admin import operations
from service.config import Settings
from service.storage import KeyExists, Storage, UnknownAccount, UserExists, open_storage


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clearbg-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="default: CLEARBG_DATABASE_URL, else sqlite:///var/clearbg.db")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser("create-account", help="a new account (optionally with its first key)")
    create.add_argument("name")
    _credit_options(create)
    create.add_argument("--free-calls", type=int, default=0, help="preview calls per month (default 0)")
    create.add_argument("--rate-limit", type=int, default=500, help="megapixel-images per minute per key (500)")
    create.add_argument("--with-key", action="store_true", help="also create an API key and print it once")

    commands.add_parser("accounts", help="list every account")

    show = commands.add_parser("show", help="one account's balances and settings")
    show.add_argument("account_id", type=int)

    update = commands.add_parser("update-account", help="change name, free calls or rate limit")
    update.add_argument("account_id", type=int)
    update.add_argument("--name")
    update.add_argument("--free-calls", type=int)
    update.add_argument("--rate-limit", type=int)

    credit = commands.add_parser("add-credits", help="add credits (negative amounts take them away)")
    credit.add_argument("account_id", type=int)
    _credit_options(credit)
    credit.add_argument("--note", default="", help="kept in the ledger (e.g. an invoice number)")

    key = commands.add_parser("create-key", help="a new API key, printed once")
    key.add_argument("account_id", type=int)

    keys = commands.add_parser("keys", help="an account's keys (prefixes only)")
    keys.add_argument("account_id", type=int)

    revoke = commands.add_parser("revoke-key", help="revoke a key: refused at once by every server")
    revoke.add_argument("key_id", type=int)

    ledger = commands.add_parser("ledger", help="an account's ledger, oldest first")
    ledger.add_argument("account_id", type=int)
    ledger.add_argument("--limit", type=int, help="only the newest N entries")

    user = commands.add_parser(
        "create-user", help="a dashboard user, printed with a one-time sign-in link (the user then sets a password)"
    )
    user.add_argument("email")
    user.add_argument("--account", type=int, help="the account the user joins (default: a new account with no credits)")
    user.add_argument("--free-calls", type=int, default=0, help="a new account's preview calls per month (default 0)")
    _base_url_option(user)

    link = commands.add_parser("sign-in-link", help="a new one-time sign-in link for a dashboard user")
    link.add_argument("email")
    _base_url_option(link)
    return parser


def _base_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url", help="where people reach the REST port (default: http://127.0.0.1:CLEARBG_HTTP_PORT)"
    )


def _base_url(args: argparse.Namespace) -> str:
    return args.base_url or f"http://127.0.0.1:{Settings.from_environ().http_port}"


def _credit_options(parser: argparse.ArgumentParser) -> None:
    for source in ("subscription", "payg", "enterprise"):
        parser.add_argument(f"--{source}", default="0", metavar="AMOUNT", help=f"{source} credits (decimal)")


def _account_line(record: dict) -> str:
    return (
        f"account {record['id']} {record['name']!r}: total {record['total']} (subscription {record['subscription']}, "
        f"payg {record['payg']}, enterprise {record['enterprise']}); free calls {record['free_calls_left']} of "
        f"{record['free_calls']} left this month; rate limit {record['rate_limit_per_minute']}/min"
    )


def _key_line(record: dict) -> str:
    state = f"revoked {record['revoked_at']}" if record["revoked_at"] else "live"
    return f"key {record['id']} {record['prefix']}... account {record['account_id']}, created {record['created_at']}, {state}"


def _entry_line(record: dict) -> str:
    changes = ", ".join(
        f"{source} {record[source + '_change']}"
        for source in ("subscription", "payg", "enterprise")
        if record[source + "_change"] != "0"
    )
    if record["free_calls_change"]:
        changes = ", ".join(filter(None, [changes, f"free calls used {record['free_calls_change']:+d}"]))
    reverses = f" (reverses {record['reverses']})" if record["reverses"] else ""
    return (
        f"{record['id']:>6} {record['created_at']} {record['kind']:<9} {record['amount']:>8} {record['request_id']}"
        f"{reverses}: {changes or 'no change'} -> subscription {record['subscription_after']}, payg "
        f"{record['payg_after']}, enterprise {record['enterprise_after']}"
    )


def run(args: argparse.Namespace, storage: Storage, out: TextIO) -> int:
    def emit(data, text: str) -> None:
        out.write((json.dumps(data, indent=2) if args.json else text) + "\n")

    command = args.command
    if command == "create-account":
        account, key = operations.create_account(
            storage, args.name, subscription=args.subscription, payg=args.payg, enterprise=args.enterprise,
            free_calls=args.free_calls, rate_limit_per_minute=args.rate_limit, with_key=args.with_key,
        )
        record = operations.account_record(account)
        text = "created " + _account_line(record)
        if key:
            text += f"\nAPI key (shown once, store it now): {key}"
        emit({"account": record, "api_key": key or ""}, text)
    elif command == "accounts":
        records = [operations.account_record(a) for a in storage.list_accounts()]
        emit(records, "\n".join(map(_account_line, records)) or "no accounts")
    elif command == "show":
        account = storage.get_account(args.account_id)
        if account is None:
            raise UnknownAccount(f"no account {args.account_id}")
        record = operations.account_record(account)
        emit(record, _account_line(record))
    elif command == "update-account":
        account = storage.update_account(
            args.account_id, name=args.name, free_calls=args.free_calls, rate_limit_per_minute=args.rate_limit
        )
        record = operations.account_record(account)
        emit(record, "updated " + _account_line(record))
    elif command == "add-credits":
        account = operations.add_credits(
            storage, args.account_id, subscription=args.subscription, payg=args.payg, enterprise=args.enterprise,
            note=args.note,
        )
        record = operations.account_record(account)
        emit(record, "credited " + _account_line(record))
    elif command == "create-key":
        key, stored = operations.create_key(storage, args.account_id)
        emit(
            {"api_key": key, "key": operations.key_record(stored)},
            f"{_key_line(operations.key_record(stored))}\nAPI key (shown once, store it now): {key}",
        )
    elif command == "keys":
        records = [operations.key_record(k) for k in storage.list_keys(args.account_id)]
        emit(records, "\n".join(map(_key_line, records)) or "no keys")
    elif command == "revoke-key":
        revoked = storage.revoke_key(args.key_id)
        emit({"revoked": revoked}, f"key {args.key_id} revoked" if revoked else f"key {args.key_id}: unknown or already revoked")
        return 0 if revoked else 1
    elif command in ("create-user", "sign-in-link"):
        from service.dashboard.service import create_user, normalize_email, sign_in_link

        if command == "create-user":
            user = create_user(storage, args.email, account_id=args.account, free_calls=args.free_calls)
        else:
            user = storage.find_user(normalize_email(args.email))
            if user is None:
                raise ValueError(f"no dashboard user {args.email!r}")
        link = sign_in_link(storage, user, _base_url(args))
        emit(
            {"user": {"id": user.id, "account_id": user.account_id, "email": user.email}, "sign_in_link": link},
            f"user {user.email} (account {user.account_id})\nOne-time sign-in link (valid 24 hours): {link}",
        )
    elif command == "ledger":
        if storage.get_account(args.account_id) is None:
            raise UnknownAccount(f"no account {args.account_id}")
        records = [operations.entry_record(e) for e in storage.ledger(args.account_id, args.limit)]
        emit(records, "\n".join(map(_entry_line, records)) or "no entries")
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    try:
        url = args.database_url or Settings.from_environ().database_url
    except ValueError as exc:
        print(f"clearbg-admin: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        storage = open_storage(url)
    except Exception as exc:  # noqa: BLE001 - a wrong URL or a database that is down
        print(f"clearbg-admin: cannot open {url.split('@')[-1]!r}: {exc}", file=sys.stderr)
        return 2
    try:
        return run(args, storage, out)
    except (ValueError, UnknownAccount, KeyExists, UserExists) as exc:
        print(f"clearbg-admin: {exc}", file=sys.stderr)
        return 1
    finally:
        storage.close()
