"""The broker going away and coming back while checkouts are in flight: the relays keep the
events in their outboxes until the broker confirms them, the consumers reconnect, redeliveries
are skipped by the inboxes, and every checkout ends with every effect once."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest

from tests.choreography.tcp_proxy import CuttableProxy
from tests.conftest import BrokerUnderTest
from tests.invariants import check_invariants
from tests.suite import checkout_body, running_suite

pytestmark = pytest.mark.anyio


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def test_checkouts_placed_while_the_broker_is_unreachable_all_finish_once(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    upstream = urlsplit(broker.url)
    proxy = CuttableProxy(upstream.hostname or "127.0.0.1", upstream.port or 5672)
    async with proxy.running():
        settings = broker.settings | {"broker_url": through(broker.url, proxy.port)}
        async with running_suite(
            database_url, everywhere=settings, checkout_sync_deadline_s=0.2
        ) as suite:
            await suite.stock("SKU-001", 100)
            ids = []
            for index in range(12):
                if index == 4:
                    proxy.cut()  # the broker "restarts": every connection drops
                if index == 8:
                    await anyio.sleep(1.0)
                    proxy.restore()
                body = checkout_body(customer_id=f"c-{index}", email=f"b{index}@example.com")
                response = await suite.orchestrator.post(
                    "/checkouts", json=body, headers={"Prefer": "respond-async"}
                )
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])
            problems = await check_invariants(
                suite.orchestrator,
                suite.warehouse,
                suite.rewards,
                suite.email,
                checkout_ids=ids,
                wait_s=60,
            )
            assert problems == []
            listed = (await suite.orchestrator.get("/checkouts", params={"limit": 50})).json()
            assert sorted(c["status"] for c in listed["items"]) == ["completed"] * 12
