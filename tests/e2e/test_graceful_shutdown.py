"""SIGTERM with checkouts in flight: the orchestrator finishes them within SHUTDOWN_GRACE_S or hands
them back at once, exits 0, and a restart leaves every checkout terminal with each effect once.

A delaying reverse proxy in front of the email service keeps the sagas in flight when the signal
arrives.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest

from tests.e2e.harness import SERVICES, TEST_BOUND_S, Harness
from tests.invariants import check_invariants, wait_until_terminal
from tests.suite import checkout_body

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

IN_FLIGHT = 10
EXIT_MARGIN_S = 10.0


@pytest.mark.parametrize(
    ("grace_s", "email_delay_s"),
    [pytest.param(10.0, 1.0, id="finished-within-grace"), pytest.param(0.5, 3.0, id="handed-back")],
)
async def test_sigterm_with_checkouts_in_flight(
    harness: Harness, tmp_path: Path, grace_s: float, email_delay_s: float
) -> None:
    """SIGTERM mid-saga: exit 0 within the grace period (plus a margin); nothing is lost or doubled."""
    with anyio.fail_after(TEST_BOUND_S):
        services = harness.services({s: f"sqlite:///{tmp_path / s}.db" for s in SERVICES})
        proxy = harness.process(
            "proxy",
            PROXY_UPSTREAM=services["email"].url,
            PROXY_DELAY_S=str(email_delay_s),
            PROXY_DELAY="POST /emails",
        )
        # A long lease: a checkout the first process did not hand back would wait 60 s for a restart.
        orchestrator = harness.orchestrator(
            f"sqlite:///{tmp_path / 'orchestrator'}.db",
            services | {"email": proxy.url},
            SHUTDOWN_GRACE_S=str(grace_s),
            LEASE_TTL_S="60",
        )
        await harness.start_all(orchestrator, proxy, *services.values())
        api, warehouse, rewards, email = (
            harness.client(p) for p in (orchestrator, *services.values())
        )
        response = await warehouse.put("/inventory/SKU-001", json={"on_hand": 100})
        assert response.status_code == 201, response.text

        accepted = []
        for n in range(IN_FLIGHT):
            response = await api.post(
                "/checkouts",
                json=checkout_body(customer_id=f"c-{n % 3}", member=n % 2 == 0),
                headers={"Prefer": "respond-async"},
            )
            assert response.status_code == 202, response.text
            accepted.append(response.json()["id"])
        await anyio.sleep(0.3)
        await api.aclose()

        signalled = time.monotonic()
        orchestrator.terminate()
        # uvicorn re-raises the signal it handled once it has shut down: -SIGTERM is a clean exit.
        assert await orchestrator.wait_exit(grace_s + EXIT_MARGIN_S) in (0, -signal.SIGTERM)
        took = time.monotonic() - signalled
        exited_at = datetime.now(UTC)
        assert took < grace_s + EXIT_MARGIN_S
        log = orchestrator.tail(200)
        assert "Application shutdown complete." in log
        assert "Traceback" not in log

        # The restart talks to the email service directly: no more delay.
        await orchestrator.start(orchestrator.env | {"EMAIL_URL": services["email"].url})
        async with httpx.AsyncClient(base_url=orchestrator.url, timeout=10) as api:
            views = await wait_until_terminal(api, accepted, timeout_s=20)
            assert all(v and v["status"] == "completed" for v in views.values()), views
            assert await check_invariants(api, warehouse, rewards, email, wait_s=0) == []
        finished_late = [
            i for i, v in views.items() if v and datetime.fromisoformat(v["updated_at"]) > exited_at
        ]
        if grace_s > email_delay_s * 2:
            # Each saga's email call ends within the grace period: all were done before the exit.
            assert finished_late == []
        else:
            # Cut short and handed back (lease expiry set to now): resumed at once, not after 60 s.
            assert sorted(finished_late) == sorted(accepted)
