"""The Restate baseline's workflow: the baselines' checkout as a Restate service, every call journaled.

``python -m bench.restate_app --port PORT [--http 2|1.1]`` serves one Restate Python SDK service,
``Checkout``, whose handler ``create`` does what ``bench.baselines`` does: the body validated by
the same pydantic model, then ``run_checkout``'s three calls in sequence (reserve, credit a
member's points, send the confirmation) with the same bodies and ``Idempotency-Key`` headers, on
the aiohttp baseline's client. Each call runs inside ``ctx.run_typed``, so Restate journals its
answer before the workflow goes on, the durable equivalent of the orchestrator's journal; the
checkout id comes from ``ctx.uuid()``, the same on every replay. The answer is the baselines' JSON
(``"status": "completed"`` and the ids). ``restate-server`` calls it (``bench.restate``), never the
load generator.

Service URLs and ``SERVICE_TOKEN`` come from the environment, as for the baselines.

Served on 127.0.0.1 by hypercorn over HTTP/2 (``--http 2``, the default) or by uvicorn over
HTTP/1.1 (``--http 1.1``); see ``serve`` for what each means to Restate.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import restate
from restate.server import install_shutdown_hook

from bench.baselines import CheckoutCreate, aiohttp_post, aiohttp_session, run_checkout

if TYPE_CHECKING:
    import aiohttp

SERVICE, HANDLER = "Checkout", "create"
# A call that fails is retried (the calls already journaled are not made again), as the
# orchestrator retries a step; bounded, so a broken stand-in fails the checkout (an error answer
# from the ingress, an error to the load) instead of holding it for as long as Restate would.
STEP_OPTIONS: restate.RunOptions[dict[str, Any]] = restate.RunOptions(
    max_attempts=5, initial_retry_interval=timedelta(milliseconds=100)
)

checkout = restate.Service(SERVICE)
# The process's one client, opened and closed by the app's lifespan (``create_app``).
_sessions: list[aiohttp.ClientSession] = []


@checkout.handler(HANDLER)
async def create(ctx: restate.Context, body: CheckoutCreate) -> dict[str, Any]:
    """One checkout: ``run_checkout`` with each call a journaled step."""
    call = aiohttp_post(_sessions[0])

    async def journaled(url: str, json: dict[str, Any], key: str) -> dict[str, Any]:
        async def once() -> dict[str, Any]:
            return await call(url, json, key)

        # "warehouse:reserve", "rewards:credit", "email:confirmation": the key without the id.
        step = key.split(":", 1)[1]
        return await ctx.run_typed(step, once, STEP_OPTIONS)

    return await run_checkout(body, journaled, checkout_id=str(ctx.uuid()))


def create_app() -> Any:
    """The SDK's ASGI app with the one service, and a lifespan for the client it calls with.

    The SDK's app has no lifespan of its own (servers warn and go on without one).
    """
    sdk_app = restate.app(services=[checkout])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await sdk_app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _sessions.append(aiohttp_session())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                while _sessions:
                    await _sessions.pop().close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


async def serve(port: int, http: str) -> None:
    """Serve until SIGTERM or SIGINT.

    Over HTTP/2 (what Restate speaks to a deployment unless told otherwise, and what the SDK's
    docs serve with hypercorn) an invocation is one bidirectional stream: the workflow runs
    through to its answer, each step's result journaled on the way. Over HTTP/1.1 (registered
    with ``use_http_11``) the SDK answers in request-response mode: after each step it suspends
    and restate-server calls it again with the journal so far, a request and a replay per step;
    uvicorn serves it with the bench's options.

    The SDK installs its own SIGTERM handler on the first invocation, replacing the server's;
    so the shutdown goes through the SDK's hook list instead.
    """
    app = create_app()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        install_shutdown_hook(loop, stop.set, signum)
    if http == "2":
        from hypercorn.asyncio import serve as hypercorn_serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.loglevel = "WARNING"
        config.accesslog = None
        # The SDK docs' production settings: one connection carries every invocation.
        config.h2_max_concurrent_streams = 2**31 - 1
        config.keep_alive_max_requests = 2**31 - 1
        config.keep_alive_timeout = 2**31 - 1
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait, mode="asgi")
        return
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            loop="none",
            http="httptools",
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=30,
        )
    )

    async def exit_on_stop() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.ensure_future(exit_on_stop())
    try:
        await server.serve()
    finally:
        watcher.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http", choices=("2", "1.1"), default="2")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.port, args.http))


if __name__ == "__main__":
    main()
