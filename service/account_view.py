"""An account as the API shows it: the REST document of GET /v1.0/account, and the typed answer.

The REST document is written here rather than printed from a message by the gateway: its
credits are JSON numbers, written exactly as the ledger keeps them (decimals, never a double's
rounding), and its shape is the API page's, byte for byte.
"""

from __future__ import annotations

import json

from clearbg.v1 import account_pb2
from service.credits import format_credits
from service.storage import Account

SIZES = "all"


def _balances(account: Account) -> dict[str, str]:
    return {
        "total": format_credits(account.total),
        "subscription": format_credits(account.subscription),
        "payg": format_credits(account.payg),
        "enterprise": format_credits(account.enterprise),
    }


def account_json(account: Account) -> bytes:
    """`{"data":{"attributes":{"credits":{"total":50,...},"api":{"free_calls":50,"sizes":"all"}}}}`"""
    # Decimal text is a valid JSON number as it is ("12.5", "0"): joined in, not re-encoded.
    credits = ",".join(f"{json.dumps(name)}:{text}" for name, text in _balances(account).items())
    api = json.dumps({"free_calls": account.free_calls_left(), "sizes": SIZES}, separators=(",", ":"))
    return f'{{"data":{{"attributes":{{"credits":{{{credits}}},"api":{api}}}}}}}'.encode()


def typed_account(account: Account) -> account_pb2.GetAccountResponse:
    return account_pb2.GetAccountResponse(
        data=account_pb2.AccountData(
            attributes=account_pb2.AccountAttributes(
                credits=account_pb2.Credits(**_balances(account)),
                api=account_pb2.ApiAllowance(free_calls=account.free_calls_left(), sizes=SIZES),
            )
        )
    )
