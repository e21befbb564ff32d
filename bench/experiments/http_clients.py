"""What one service call costs the caller, in CPU, on each HTTP client.

``python -m bench.experiments.http_clients [--n 3000] [--concurrency 1,32]``

Starts one stand-in (``bench.standins``, uvicorn with uvloop/httptools) on 127.0.0.1 and sends it
``--n`` POSTs like the orchestrator's (a ~300-byte JSON body, an ``Idempotency-Key``, JSON answer
decoded) from this process on uvloop, with each client:

- ``httpx``: ``httpx.AsyncClient`` as the orchestrator builds it (timeout, limits);
- ``httpx+aiohttp-transport``: the same ``httpx.AsyncClient`` API on ``httpx_aiohttp.AiohttpTransport``
  (the ``httpx-aiohttp`` package; skipped if it is not importable: ``pip install httpx-aiohttp``,
  or put it on ``PYTHONPATH``);
- ``aiohttp``: ``aiohttp.ClientSession`` directly;
- ``orchestrator``: the orchestrator's own ``service_http.AiohttpServiceHTTP`` (aiohttp, orjson),
  as ``ServiceClients`` calls it.

Reports this process's CPU per request (``time.process_time``) and requests per second; the
stand-in's CPU is not counted. A checkout makes three such calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import emit
from bench.procs import Server, stop_all

BODY = {
    "to": "bench@example.com",
    "template": "order_confirmation",
    "checkout_id": str(uuid.uuid4()),
    "context": {
        "customer_name": "Bench Member",
        "checkout_id": str(uuid.uuid4()),
        "items": [{"sku": "SKU-001", "quantity": 1, "unit_price": "19.99"}],
        "total": "19.99",
        "currency": "USD",
        "points": 19,
    },
}

Post = Callable[[str], Awaitable[dict[str, Any]]]


async def httpx_client(
    url: str, transport: Any = None
) -> tuple[Post, Callable[[], Awaitable[None]]]:
    import httpx

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    client = httpx.AsyncClient(timeout=httpx.Timeout(5.0), limits=limits, transport=transport)

    async def post(key: str) -> dict[str, Any]:
        response = await client.post(url, json=BODY, headers={"Idempotency-Key": key})
        return response.json()  # type: ignore[no-any-return]

    return post, client.aclose


async def httpx_aiohttp_client(url: str) -> tuple[Post, Callable[[], Awaitable[None]]]:
    from httpx_aiohttp import AiohttpTransport

    return await httpx_client(url, AiohttpTransport())


async def aiohttp_client(url: str) -> tuple[Post, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200), timeout=aiohttp.ClientTimeout(total=5.0)
    )

    async def post(key: str) -> dict[str, Any]:
        async with session.post(url, json=BODY, headers={"Idempotency-Key": key}) as response:
            return await response.json()  # type: ignore[no-any-return]

    return post, session.close


async def orchestrator_client(url: str) -> tuple[Post, Callable[[], Awaitable[None]]]:
    from orchestrator.service_http import AiohttpServiceHTTP
    from orchestrator.settings import Settings

    http = AiohttpServiceHTTP(Settings())

    async def post(key: str) -> dict[str, Any]:
        answer = await http.request("POST", url, json=BODY, key=key)
        return answer.json()  # type: ignore[no-any-return]

    return post, http.aclose


async def measure(post: Post, n: int, concurrency: int) -> tuple[float, float]:
    for i in range(100):
        await post(f"warm-{i}-{uuid.uuid4()}")
    left = n
    cpu0, wall0 = time.process_time(), time.perf_counter()

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            answer = await post(str(uuid.uuid4()))
            assert "id" in answer

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - cpu0) * 1000 / n, n / (time.perf_counter() - wall0)


async def main(args: argparse.Namespace, url: str) -> list[dict[str, Any]]:
    clients: list[tuple[str, Callable[[str], Awaitable[Any]]]] = [
        ("httpx", httpx_client),
        ("httpx+aiohttp-transport", httpx_aiohttp_client),
        ("aiohttp", aiohttp_client),
        ("orchestrator", orchestrator_client),
    ]
    rows = []
    for rounds in range(args.rounds):
        for name, build in clients:
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                try:
                    post, close = await build(url)
                except ImportError as exc:
                    if rounds == 0 and concurrency == int(args.concurrency.split(",")[0]):
                        emit(f"{name:26} skipped: {exc}")
                    continue
                try:
                    cpu_ms, per_s = await measure(post, args.n, concurrency)
                finally:
                    await close()
                rows.append(
                    {
                        "client": name,
                        "concurrency": concurrency,
                        "cpu_ms": cpu_ms,
                        "per_s": per_s,
                        "round": rounds,
                    }
                )
                emit(
                    f"{name:26} C={concurrency:<3} {cpu_ms:6.3f} ms CPU/request  {per_s:7.0f} requests/s"
                )
    return rows


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rounds", type=int, default=2, help="repeat the whole set (noise)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import uvloop

    workdir = Path(tempfile.mkdtemp(prefix="http-clients-"))
    server = Server("standin", "bench.standins:create_app", {}, workdir).start()
    try:
        rows = uvloop.run(main(args, f"{server.url}/emails"))
    finally:
        server.stop()
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    run()
