"""In-process asyncio servers for tests: serve a connection handler on a free loopback port from a thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def serve_in_thread(handle: Handler) -> tuple[str, Callable[[], None]]:
    """Start serving; returns (base URL, stop function). The thread runs its own event loop."""
    state: dict = {}
    started = threading.Event()

    async def main() -> None:
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        state["port"] = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await state["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    if not started.wait(5):
        raise RuntimeError("test server did not start")

    def stop() -> None:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(5)

    return f"http://127.0.0.1:{state['port']}", stop
