"""Data written at the first revision survives the upgrade to head and reads back through each API.

Each test builds the database at ``0001_initial`` only, inserts representative rows with plain SQL
(as an older release would have left them; idempotency keys hashed as this release stores them),
upgrades to head (crossing the second revision), then starts the service on it and reads the rows
through its HTTP API, replays included.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from email_service.schemas import EmailCreate
from orchestrator.schemas import CheckoutCreate
from rewards_service.schemas import TransactionCreate
from servicekit.db.engines import create_sync_engine
from servicekit.idempotency import fingerprint, stored_key
from servicekit.migrations import upgrade
from tests.migrations.helpers import INITIAL, SERVICES, count, differences, insert, version_of
from tests.support import running
from warehouse_service.schemas import ReservationCreate

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def _at_initial(name: str, url: str) -> None:
    upgrade(url, SERVICES[name].history, INITIAL)
    assert version_of(url, SERVICES[name].history) == [INITIAL]


def _to_head(name: str, url: str) -> None:
    service = SERVICES[name]
    upgrade(url, service.history)
    assert version_of(url, service.history) == [service.head]
    assert differences(url, service.history) == []


def _seed(url: str, rows: list[tuple[str, dict[str, object]]]) -> None:
    engine = create_sync_engine(url)
    try:
        with engine.begin() as connection:
            for table, values in rows:
                insert(connection, table, **values)
    finally:
        engine.dispose()


async def test_warehouse_inventory_and_reservations_survive(
    database_url: Callable[[str], str],
) -> None:
    """Stock, a two-line reservation and its idempotency record read back after the upgrade."""
    url = database_url("warehouse")
    _at_initial("warehouse", url)
    reservation_id = uuid.uuid4()
    request = {
        "checkout_id": "co-1",
        "items": [{"sku": "SKU-B", "quantity": 1}, {"sku": "SKU-A", "quantity": 2}],
    }
    answer = {
        "id": str(reservation_id),
        "checkout_id": "co-1",
        "status": "reserved",
        "items": [{"sku": "SKU-A", "quantity": 2}, {"sku": "SKU-B", "quantity": 1}],
        "created_at": T0.isoformat().replace("+00:00", "Z"),
        "released_at": None,
    }
    digest = fingerprint(ReservationCreate.model_validate(request).model_dump(mode="json"))
    _seed(
        url,
        [
            ("inventory_item", {"sku": "SKU-A", "on_hand": 10, "reserved": 2, "updated_at": T0}),
            ("inventory_item", {"sku": "SKU-B", "on_hand": 5, "reserved": 1, "updated_at": T0}),
            (
                "reservation",
                {
                    "id": reservation_id,
                    "checkout_id": "co-1",
                    "status": "reserved",
                    "created_at": T0,
                    "released_at": None,
                },
            ),
            ("reservation_line", {"reservation_id": reservation_id, "sku": "SKU-B", "quantity": 1}),
            ("reservation_line", {"reservation_id": reservation_id, "sku": "SKU-A", "quantity": 2}),
            (
                "idempotency_record",
                {
                    "scope": "POST /reservations",
                    "key": stored_key("co-1:warehouse:reserve"),
                    "fingerprint": digest,
                    "status_code": 201,
                    "response_body": json.dumps(answer),
                    "created_at": T0,
                },
            ),
        ],
    )
    _to_head("warehouse", url)
    assert count(url, "reservation_line") == 2

    async with running(SERVICES["warehouse"].make_app(url)) as client:
        stock = await client.get("/inventory/SKU-A")
        assert stock.status_code == 200
        assert stock.json() == {"sku": "SKU-A", "on_hand": 10, "reserved": 2, "available": 8}
        read = await client.get(f"/reservations/{reservation_id}")
        assert read.status_code == 200
        assert read.json()["items"] == answer["items"]  # sku order, now from the new index
        assert datetime.fromisoformat(read.json()["created_at"]) == T0
        listed = await client.get("/reservations", params={"checkout_id": "co-1"})
        assert [r["id"] for r in listed.json()["items"]] == [str(reservation_id)]
        replay = await client.post(
            "/reservations", json=request, headers={"Idempotency-Key": "co-1:warehouse:reserve"}
        )
        assert replay.status_code == 201
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == answer
        released = await client.post(f"/reservations/{reservation_id}/release")
        assert released.json()["status"] == "released"
        assert (await client.get("/inventory/SKU-A")).json()["reserved"] == 0


async def test_rewards_account_and_ledger_survive(database_url: Callable[[str], str]) -> None:
    """An account, its credits and a reversal read back newest first after the upgrade."""
    url = database_url("rewards")
    _at_initial("rewards", url)
    credit_1, reversal_1, credit_2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    request = {"checkout_id": "co-2", "points": 30}
    answer = {
        "id": str(credit_2),
        "customer_id": "c-1",
        "checkout_id": "co-2",
        "kind": "credit",
        "points": 30,
        "reverses_id": None,
        "created_at": (T0 + timedelta(seconds=2)).isoformat().replace("+00:00", "Z"),
    }
    digest = fingerprint(TransactionCreate.model_validate(request).model_dump(mode="json"))
    ledger = {"customer_id": "c-1"}
    _seed(
        url,
        [
            ("account", {"customer_id": "c-1", "balance": 30, "created_at": T0, "updated_at": T0}),
            (
                "point_transaction",
                {
                    **ledger,
                    "id": credit_1,
                    "checkout_id": "co-1",
                    "kind": "credit",
                    "points": 50,
                    "reverses_id": None,
                    "created_at": T0,
                },
            ),
            (
                "point_transaction",
                {
                    **ledger,
                    "id": reversal_1,
                    "checkout_id": "co-1",
                    "kind": "reversal",
                    "points": -50,
                    "reverses_id": credit_1,
                    "created_at": T0 + timedelta(seconds=1),
                },
            ),
            (
                "point_transaction",
                {
                    **ledger,
                    "id": credit_2,
                    "checkout_id": "co-2",
                    "kind": "credit",
                    "points": 30,
                    "reverses_id": None,
                    "created_at": T0 + timedelta(seconds=2),
                },
            ),
            (
                "idempotency_record",
                {
                    "scope": "POST /accounts/c-1/transactions",
                    "key": stored_key("co-2:rewards:credit"),
                    "fingerprint": digest,
                    "status_code": 201,
                    "response_body": json.dumps(answer),
                    "created_at": T0,
                },
            ),
        ],
    )
    _to_head("rewards", url)

    async with running(SERVICES["rewards"].make_app(url)) as client:
        account = await client.get("/accounts/c-1")
        assert account.json() == {"customer_id": "c-1", "balance": 30}
        history = await client.get("/accounts/c-1/transactions", params={"limit": 10})
        assert [t["id"] for t in history.json()["items"]] == [
            str(credit_2),
            str(reversal_1),
            str(credit_1),
        ]
        assert history.json()["items"][1]["reverses_id"] == str(credit_1)
        by_checkout = await client.get("/transactions", params={"checkout_id": "co-1"})
        assert {t["kind"] for t in by_checkout.json()["items"]} == {"credit", "reversal"}
        replay = await client.post(
            "/accounts/c-1/transactions",
            json=request,
            headers={"Idempotency-Key": "co-2:rewards:credit"},
        )
        assert replay.status_code == 201
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == answer
        again = await client.post(f"/transactions/{credit_1}/reverse")
        assert again.json()["id"] == str(reversal_1)  # one reversal per credit, still
        assert (await client.get("/accounts/c-1")).json()["balance"] == 30


async def test_email_outbox_survives(database_url: Callable[[str], str]) -> None:
    """A logged confirmation and a failed one read back, by id and by recipient, after the upgrade."""
    url = database_url("email")
    _at_initial("email", url)
    logged, failed = uuid.uuid4(), uuid.uuid4()
    request = {
        "to": "ada@example.com",
        "template": "order_confirmation",
        "checkout_id": "co-1",
        "context": {},
    }
    answer = {
        "id": str(logged),
        "to": "ada@example.com",
        "template": "order_confirmation",
        "checkout_id": "co-1",
        "subject": "Your order co-1",
        "status": "logged",
        "attempts": 1,
        "last_error": None,
        "created_at": T0.isoformat().replace("+00:00", "Z"),
        "sent_at": T0.isoformat().replace("+00:00", "Z"),
    }
    digest = fingerprint(EmailCreate.model_validate(request).model_dump(mode="json"))
    message = {"to": "ada@example.com", "template": "order_confirmation", "body": "Thank you."}
    _seed(
        url,
        [
            (
                "email_message",
                {
                    **message,
                    "id": logged,
                    "checkout_id": "co-1",
                    "subject": "Your order co-1",
                    "status": "logged",
                    "attempts": 1,
                    "last_error": None,
                    "locked_until": None,
                    "created_at": T0,
                    "sent_at": T0,
                },
            ),
            (
                "email_message",
                {
                    **message,
                    "id": failed,
                    "checkout_id": "co-2",
                    "subject": "Your order co-2",
                    "status": "failed",
                    "attempts": 2,
                    "last_error": "421 try later",
                    "locked_until": None,
                    "created_at": T0 + timedelta(minutes=1),
                    "sent_at": None,
                },
            ),
            (
                "idempotency_record",
                {
                    "scope": "POST /emails",
                    "key": stored_key("co-1:email:confirmation"),
                    "fingerprint": digest,
                    "status_code": 201,
                    "response_body": json.dumps(answer),
                    "created_at": T0,
                },
            ),
        ],
    )
    _to_head("email", url)

    async with running(SERVICES["email"].make_app(url)) as client:
        detail = await client.get(f"/emails/{logged}")
        assert detail.status_code == 200
        assert detail.json()["body"] == "Thank you."
        assert detail.json()["status"] == "logged"
        to_ada = await client.get("/emails", params={"to": "ada@example.com"})
        assert [m["id"] for m in to_ada.json()["items"]] == [str(failed), str(logged)]
        assert to_ada.json()["items"][0]["last_error"] == "421 try later"
        replay = await client.post(
            "/emails", json=request, headers={"Idempotency-Key": "co-1:email:confirmation"}
        )
        assert replay.status_code == 201
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == answer


async def test_orchestrator_checkout_and_steps_survive(database_url: Callable[[str], str]) -> None:
    """A completed checkout with its three steps and its idempotency key reads back after the upgrade."""
    url = database_url("orchestrator")
    _at_initial("orchestrator", url)
    checkout_id = uuid.uuid4()
    body = {
        "customer": {
            "id": "c-42",
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "rewards_member": True,
        },
        "items": [{"sku": "SKU-001", "quantity": 2, "unit_price": "19.99"}],
        "currency": "USD",
    }
    parsed = CheckoutCreate.model_validate(body).model_dump(mode="json")
    first_answer = {"id": str(checkout_id), "status": "completed", "note": "as first answered"}
    _seed(
        url,
        [
            (
                "checkout",
                {
                    "id": checkout_id,
                    "status": "completed",
                    "customer_id": "c-42",
                    "customer": json.dumps(parsed["customer"]),
                    "items": json.dumps(parsed["items"]),
                    "currency": "USD",
                    "total_cents": 3998,
                    "points": 39,
                    "step_order": "warehouse,rewards,email",
                    "error": None,
                    "created_at": T0,
                    "updated_at": T0 + timedelta(seconds=1),
                    "idempotency_key_hash": hashlib.sha256(b"order-1001").hexdigest(),
                    "request_fingerprint": fingerprint(parsed),
                    "response_status": 201,
                    "response_body": json.dumps(first_answer),
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "lease_token": 1,
                    "next_attempt_at": None,
                    "deadline_at": None,
                    "past_pivot": True,
                    "cancel_requested": False,
                },
            ),
            *[
                (
                    "step",
                    {
                        "checkout_id": checkout_id,
                        "name": name,
                        "position": position,
                        "status": "succeeded",
                        "attempts": 1,
                        "http_status": 201,
                        "result": json.dumps(result),
                        "error": None,
                        "started_at": T0,
                        "finished_at": T0,
                        "compensated_at": None,
                    },
                )
                for position, (name, result) in enumerate(
                    [
                        ("warehouse", {"reservation_id": str(uuid.uuid4()), "status": "reserved"}),
                        ("rewards", {"transaction_id": str(uuid.uuid4()), "points": 39}),
                        ("email", {"email_id": str(uuid.uuid4()), "status": "logged"}),
                    ]
                )
            ],
        ],
    )
    _to_head("orchestrator", url)
    assert count(url, "step") == 3

    async with running(SERVICES["orchestrator"].make_app(url)) as client:
        read = await client.get(f"/checkouts/{checkout_id}")
        assert read.status_code == 200
        checkout = read.json()
        assert checkout["status"] == "completed"
        assert (checkout["total"], checkout["points"]) == ("39.98", 39)
        assert checkout["customer"] == body["customer"]
        assert [(s["name"], s["status"]) for s in checkout["steps"]] == [
            ("warehouse", "succeeded"),
            ("rewards", "succeeded"),
            ("email", "succeeded"),
        ]
        listed = await client.get("/checkouts", params={"customer_id": "c-42"})
        assert [c["id"] for c in listed.json()["items"]] == [str(checkout_id)]
        replay = await client.post(
            "/checkouts", json=body, headers={"Idempotency-Key": "order-1001"}
        )
        assert replay.status_code == 201
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first_answer
