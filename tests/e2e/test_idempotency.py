"""Idempotency-Key through the real Envoy, server, model and database: the same call sent twice
(one after the other, at the same time, and across two servers sharing PostgreSQL) is charged
once, and the repeat is the first answer byte for byte with `Idempotent-Replayed: true`; the
same key with other parameters is 422 and free; without the header nothing changes."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from api_calls import PERSON, alpha_box, alpha_of, assert_error, balance, header_box, ok, picture, removebg
from test_accounts import two_server_deployment

pytestmark = pytest.mark.e2e

# Every header of a delivered answer that the replay must repeat as it was.
ANSWER_HEADERS = (
    "content-type", "x-width", "x-height", "x-type", "x-credits-charged", "x-credits-remaining",
    "x-foreground-top", "x-foreground-left", "x-foreground-width", "x-foreground-height",
    "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
)


@pytest.fixture(scope="module")
def photo(quality) -> bytes:
    return (quality / PERSON).read_bytes()


def send(target, key: str, image: bytes, idempotency_key: str | None, **fields):
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return removebg(target, key, image, headers=headers, size="small", **fields)


def assert_replay_of(first, again) -> None:
    """`again` is `first` replayed: the same bytes and answer headers, marked as a replay."""
    ok(first), ok(again)
    assert again.content == first.content
    for name in ANSWER_HEADERS:
        assert again.headers.get(name) == first.headers.get(name), name
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["x-request-id"] != first.headers["x-request-id"]


def charges(storage, account_id: int) -> int:
    kinds = [entry.kind for entry in storage.ledger(account_id)]
    return kinds.count("charge") - kinds.count("refund")


@pytest.fixture(scope="module")
def sqlite_storage(stack):
    from service.storage import open_storage

    storage = open_storage(stack.database_url)
    yield storage
    storage.close()


def account(storage, credits: int = 10) -> tuple[int, str]:
    from service.storage.base import generate_key

    made = storage.create_account("e2e-idempotency", subscription=Decimal(credits))
    key = generate_key()
    storage.add_api_key(made.id, key)
    return made.id, key


def test_twice_in_a_row_is_charged_once_and_replayed_byte_for_byte(stack, sqlite_storage, photo):
    account_id, key = account(sqlite_storage)
    idempotency_key = str(uuid.uuid4())
    first = send(stack, key, photo, idempotency_key)
    image = picture(first)
    assert header_box(first) == alpha_box(alpha_of(image))  # a real cut-out, checked against its headers
    again = send(stack, key, photo, idempotency_key)
    assert_replay_of(first, again)
    assert first.headers["x-credits-charged"] == "1" and first.headers["x-credits-remaining"] == "9"
    assert balance(stack, key)[0] == Decimal(9)
    assert charges(sqlite_storage, account_id) == 1


def test_the_same_key_with_other_parameters_is_422_and_free(stack, sqlite_storage, photo):
    account_id, key = account(sqlite_storage)
    idempotency_key = str(uuid.uuid4())
    ok(send(stack, key, photo, idempotency_key))
    other_size = removebg(stack, key, photo, headers={"Idempotency-Key": idempotency_key}, size="preview")
    assert_error(other_size, 422, "idempotency_key_reused")
    other_photo = send(stack, key, photo + b"\0", idempotency_key)  # one byte more after the end
    assert_error(other_photo, 422, "idempotency_key_reused")
    assert other_size.headers["x-ratelimit-limit"] == "500"
    assert other_size.headers["x-request-id"]
    assert charges(sqlite_storage, account_id) == 1
    assert balance(stack, key)[0] == Decimal(9)


def test_without_the_header_each_call_is_charged(stack, sqlite_storage, photo):
    account_id, key = account(sqlite_storage)
    for _ in range(2):
        response = send(stack, key, photo, None)
        ok(response)
        assert "idempotent-replayed" not in response.headers
    assert charges(sqlite_storage, account_id) == 2


def test_twice_at_the_same_time_is_charged_once(stack, sqlite_storage, photo):
    account_id, key = account(sqlite_storage)
    idempotency_key = str(uuid.uuid4())
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: send(stack, key, photo, idempotency_key), range(2)))
    replayed = [a for a in answers if a.headers.get("idempotent-replayed") == "true"]
    firsts = [a for a in answers if "idempotent-replayed" not in a.headers]
    assert len(replayed) == 1 and len(firsts) == 1, [a.status_code for a in answers]
    assert_replay_of(firsts[0], replayed[0])
    assert charges(sqlite_storage, account_id) == 1


def servers_by_request_id(log) -> dict[str, set[str]]:
    """request id -> the servers ([server], [server-2]) that logged a line for it."""
    seen: dict[str, set[str]] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("[server"):
            continue
        name, _, rest = line.partition("] ")
        try:
            record = json.loads(rest)
        except ValueError:
            continue
        if "request_id" in record:
            seen.setdefault(record["request_id"], set()).add(name.lstrip("["))
    return seen


@pytest.fixture(scope="module")
def postgres_pair(tmp_path_factory, postgres_schema, free_port):
    # A repeat waits for the first call however long it takes here (by default 30 s, then 409):
    # on a slow CPU three first calls side by side on two cores can take longer than that.
    with two_server_deployment("idempotency", tmp_path_factory.mktemp("e2e-idem-pg"), postgres_schema(), free_port,
                               CLEARBG_IDEMPOTENCY_WAIT_S="600") as pair:
        yield pair


def test_across_two_servers_on_postgresql_each_key_is_charged_once(postgres_pair, photo):
    """Repeats one after the other (round robin alternates the servers) and pairs sent at the
    same time: every key charged once, every repeat the first answer; and the repeats were
    answered by both servers, so the second server replayed what the first one ran."""
    account_id, key = postgres_pair.account_with_key(subscription=Decimal(20))
    idempotency_key = str(uuid.uuid4())
    answers = [send(postgres_pair, key, photo, idempotency_key) for _ in range(4)]
    first, repeats = answers[0], answers[1:]
    picture(first)
    for again in repeats:
        assert_replay_of(first, again)
    servers = servers_by_request_id(postgres_pair.log)
    answered_by = set().union(*(servers.get(a.headers["x-request-id"], set()) for a in answers))
    assert answered_by == {"server", "server-2"}, servers

    keys = [str(uuid.uuid4()) for _ in range(3)]
    with ThreadPoolExecutor(6) as pool:
        pairs = list(pool.map(lambda k: send(postgres_pair, key, photo, k), [k for k in keys for _ in range(2)]))
    for number in range(3):
        one, other = pairs[2 * number], pairs[2 * number + 1]
        ok(one), ok(other)
        assert one.content == other.content
        assert sorted(a.headers.get("idempotent-replayed", "") for a in (one, other)) == ["", "true"]
    assert charges(postgres_pair.storage, account_id) == 4
    assert postgres_pair.storage.get_account(account_id).total == Decimal(16)
