"""The operator's tools: `clearbg-admin` on both backends (SQLite file, and the real PostgreSQL
in a schema of its own), and the gRPC AdminService in the real grpc.aio server (fake engine):
served only with a token, refused without it, the same operations and errors."""

from __future__ import annotations

import datetime as dt

import dataclasses
import importlib.metadata
import io
import json
import subprocess
import sys
from decimal import Decimal

import grpc
import pytest

from clearbg.v1 import account_pb2, account_pb2_grpc, admin_pb2, admin_pb2_grpc
from service.admin import cli
from service.admin.operations import parse_credits
from service.config import Settings
from service.storage import open_storage

TOKEN = "admin-token-for-unit-tests-0123"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/admin.db"
    return request.getfixturevalue("postgres_schema")()


def admin(database_url: str, *args: str) -> tuple[int, dict | list]:
    """Runs the CLI in-process with --json; returns its exit code and parsed output."""
    out = io.StringIO()
    code = cli.main(["--database-url", database_url, "--json", *args], out=out)
    return code, (json.loads(out.getvalue()) if out.getvalue() else None)


def test_cli_account_life_cycle(database_url, capsys):
    code, created = admin(database_url, "create-account", "Acme", "--subscription", "45", "--payg", "5",
                          "--free-calls", "50", "--with-key")
    assert code == 0
    account, key = created["account"], created["api_key"]
    assert (account["total"], account["subscription"], account["free_calls_left"]) == ("50", "45", 50)
    assert key.startswith("cbg_")

    code, credited = admin(database_url, "add-credits", str(account["id"]), "--enterprise", "2.5", "--payg", "-1",
                           "--note", "invoice-7")
    assert code == 0 and (credited["enterprise"], credited["payg"], credited["total"]) == ("2.5", "4", "51.5")

    code, second = admin(database_url, "create-key", str(account["id"]))
    assert code == 0 and second["api_key"] != key and second["key"]["prefix"] == second["api_key"][:10]
    code, keys = admin(database_url, "keys", str(account["id"]))
    assert [k["revoked_at"] for k in keys] == ["", ""]

    code, revoked = admin(database_url, "revoke-key", str(keys[0]["id"]))
    assert (code, revoked) == (0, {"revoked": True})
    code, again = admin(database_url, "revoke-key", str(keys[0]["id"]))
    assert (code, again) == (1, {"revoked": False})

    storage = open_storage(database_url)
    try:
        assert storage.find_key(key) is None and storage.find_key(second["api_key"]) is not None
        storage.reserve(account["id"], None, "req-1", Decimal(1))
    finally:
        storage.close()
    code, ledger = admin(database_url, "ledger", str(account["id"]))
    assert [(e["kind"], e["amount"], e["request_id"]) for e in ledger] == [
        ("credit", "1.5", "invoice-7"), ("charge", "1", "req-1"),
    ]
    assert (ledger[1]["subscription_change"], ledger[1]["subscription_after"]) == ("-1", "44")
    code, newest = admin(database_url, "ledger", str(account["id"]), "--limit", "1")
    assert [e["request_id"] for e in newest] == ["req-1"]

    code, updated = admin(database_url, "update-account", str(account["id"]), "--rate-limit", "20", "--name", "Acme 2")
    assert (updated["rate_limit_per_minute"], updated["name"], updated["free_calls"]) == (20, "Acme 2", 50)
    code, listed = admin(database_url, "accounts")
    assert [a["name"] for a in listed] == ["Acme 2"]
    # Text output (no --json) names what matters.
    assert cli.main(["--database-url", database_url, "show", str(account["id"])]) == 0
    assert "total 50.5" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "999"], "no account 999"),
        (["ledger", "999"], "no account 999"),
        (["add-credits", "999", "--payg", "1"], "no account 999"),
        (["create-key", "999"], "no account 999"),
        (["create-account", "x", "--payg", "1.0000001"], "at most 6 decimals"),
        (["create-account", "x", "--payg", "ten"], "must be a number"),
        (["create-account", "x", "--payg", "-5"], "cannot be negative"),
        (["create-account", " "], "needs a name"),
    ],
)
def test_cli_refuses_bad_input_clearly(tmp_path, capsys, args, message):
    url = f"sqlite:///{tmp_path}/admin.db"
    assert cli.main(["--database-url", url, *args]) == 1
    assert message in capsys.readouterr().err


def test_cli_taking_credits_below_zero_changes_nothing(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/admin.db"
    admin(url, "create-account", "a", "--payg", "1")
    assert cli.main(["--database-url", url, "add-credits", "1", "--payg", "-2"]) == 1
    assert "below zero" in capsys.readouterr().err
    assert admin(url, "show", "1")[1]["payg"] == "1"


def test_cli_unreachable_database_is_exit_2(capsys):
    assert cli.main(["--database-url", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", "accounts"]) == 2
    assert "cannot open" in capsys.readouterr().err


def test_cli_runs_as_a_module_and_reads_the_environment(tmp_path):
    env = {"CLEARBG_DATABASE_URL": f"sqlite:///{tmp_path}/env.db", "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "service.admin", "create-account", "from-env", "--payg", "3"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "total 3" in run.stdout and (tmp_path / "env.db").is_file()


def test_console_script_is_declared():
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("clearbg-admin") == "service.admin.cli:main"


@pytest.mark.parametrize("text, value", [("12.5", Decimal("12.5")), ("", Decimal(0)), (" -3 ", Decimal(-3)), ("0.000001", Decimal("0.000001"))])
def test_parse_credits(text, value):
    assert parse_credits(text, "x") == value


@pytest.mark.parametrize("text", ["NaN", "Infinity", "1e12", "0.0000005", "1,5"])
def test_parse_credits_refuses(text):
    with pytest.raises(ValueError):
        parse_credits(text, "x")


# -- the gRPC AdminService ----------------------------------------------------------------------


@pytest.fixture
def settings(request) -> Settings:
    """Overrides conftest.py's: this module's server serves the AdminService (unless a test
    parametrizes it with None)."""
    return Settings(grpc_port=0, engine_workers=2, max_queue=64, admin_token=getattr(request, "param", TOKEN))


@pytest.fixture
def admin_stub(grpc_server):
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        yield admin_pb2_grpc.AdminServiceStub(channel), account_pb2_grpc.AccountServiceStub(channel)


BEARER = [("authorization", f"Bearer {TOKEN}")]


@pytest.mark.parametrize("metadata", [[], [("authorization", "Bearer wrong-token-0123456789")], [("authorization", TOKEN)]])
def test_admin_calls_without_the_token_are_refused(admin_stub, storage, metadata):
    stub, _ = admin_stub
    before = storage.count_accounts()
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateAccount(admin_pb2.CreateAccountRequest(name="x", payg="5"), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert storage.count_accounts() == before  # nothing happened


def test_admin_service_operations(admin_stub, storage):
    stub, accounts = admin_stub
    created = stub.CreateAccount(
        admin_pb2.CreateAccountRequest(name="Acme", subscription="10", free_calls=5, with_api_key=True), metadata=BEARER
    )
    account_id, key = created.account.id, created.api_key
    assert (created.account.total, created.account.free_calls_left, created.account.rate_limit_per_minute) == ("10", 5, 500)
    seen = accounts.GetAccount(account_pb2.GetAccountRequest(), metadata=[("x-api-key", key)])
    assert seen.data.attributes.credits.total == "10"  # the same exact decimal text as the admin's

    credited = stub.AddCredits(admin_pb2.AddCreditsRequest(account_id=account_id, payg="0.25", note="inv"), metadata=BEARER)
    assert credited.account.total == "10.25"
    updated = stub.UpdateAccount(admin_pb2.UpdateAccountRequest(account_id=account_id, free_calls=9), metadata=BEARER)
    assert (updated.account.free_calls, updated.account.name) == (9, "Acme")
    assert stub.DescribeAccount(admin_pb2.DescribeAccountRequest(account_id=account_id), metadata=BEARER).account == updated.account
    listed = stub.ListAccounts(admin_pb2.ListAccountsRequest(), metadata=BEARER).accounts
    assert [a.id for a in listed] == [a.id for a in storage.list_accounts()] and account_id in [a.id for a in listed]

    extra = stub.CreateApiKey(admin_pb2.CreateApiKeyRequest(account_id=account_id), metadata=BEARER)
    keys = stub.ListApiKeys(admin_pb2.ListApiKeysRequest(account_id=account_id), metadata=BEARER).keys
    assert [k.id for k in keys][-1] == extra.key.id and not any(k.HasField("revoked_at") for k in keys)
    made = keys[0].created_at.ToDatetime(tzinfo=dt.timezone.utc)
    assert abs((dt.datetime.now(dt.timezone.utc) - made).total_seconds()) < 600
    first = keys[0].id
    assert stub.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(key_id=first), metadata=BEARER).revoked
    [revoked] = [k for k in stub.ListApiKeys(admin_pb2.ListApiKeysRequest(account_id=account_id), metadata=BEARER).keys
                 if k.id == first]
    assert revoked.revoked_at.ToDatetime(tzinfo=dt.timezone.utc) >= made
    assert not stub.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(key_id=first), metadata=BEARER).revoked
    with pytest.raises(grpc.RpcError) as caught:
        accounts.GetAccount(account_pb2.GetAccountRequest(), metadata=[("x-api-key", key)])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # the revoked key, at once

    entries = stub.ListLedgerEntries(admin_pb2.ListLedgerEntriesRequest(account_id=account_id), metadata=BEARER).entries
    assert [(e.kind, e.amount, e.request_id, e.payg_change) for e in entries] == [("credit", "0.25", "inv", "0.25")]
    assert entries[0].created_at.ToDatetime(tzinfo=dt.timezone.utc) >= made


@pytest.mark.parametrize(
    "call, request_, code",
    [
        ("DescribeAccount", admin_pb2.DescribeAccountRequest(account_id=999), grpc.StatusCode.NOT_FOUND),
        ("ListLedgerEntries", admin_pb2.ListLedgerEntriesRequest(account_id=999), grpc.StatusCode.NOT_FOUND),
        ("CreateApiKey", admin_pb2.CreateApiKeyRequest(account_id=999), grpc.StatusCode.NOT_FOUND),
        ("AddCredits", admin_pb2.AddCreditsRequest(account_id=999, payg="1"), grpc.StatusCode.NOT_FOUND),
        ("CreateAccount", admin_pb2.CreateAccountRequest(name="x", payg="lots"), grpc.StatusCode.INVALID_ARGUMENT),
        ("CreateAccount", admin_pb2.CreateAccountRequest(name=""), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_admin_service_errors(admin_stub, call, request_, code):
    stub, _ = admin_stub
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, call)(request_, metadata=BEARER)
    assert caught.value.code() == code
    assert "Traceback" not in (caught.value.details() or "")


@pytest.mark.parametrize("settings", [None], indirect=True)  # no admin token
def test_admin_service_is_not_served_without_a_token(grpc_server):
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        with pytest.raises(grpc.RpcError) as caught:
            admin_pb2_grpc.AdminServiceStub(channel).ListAccounts(admin_pb2.ListAccountsRequest(), metadata=BEARER)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("token", ["short", "x" * 15])
def test_short_admin_tokens_are_a_configuration_error(token):
    with pytest.raises(ValueError, match="at least 16"):
        Settings.from_environ({"CLEARBG_ADMIN_TOKEN": token})
    assert Settings.from_environ({}).admin_token is None
    assert dataclasses.replace(Settings(), admin_token=TOKEN).admin_token == TOKEN
