"""In-process servers for tests: serve an HTTP app (edgepack.runtime.http) on a free loopback port from a thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

from edgepack.runtime.http import App, listen


def serve_in_thread(app: App, *, read_timeout: float = 30.0) -> tuple[str, Callable[[], None]]:
    """Start serving; returns (base URL, stop function). The thread runs its own event loop."""
    state: dict = {}
    started = threading.Event()

    async def main() -> None:
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        listener = await listen(app, "127.0.0.1", 0, read_timeout=read_timeout)
        state["port"] = listener.port
        started.set()
        async with listener:
            await state["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    if not started.wait(5):
        raise RuntimeError("test server did not start")

    def stop() -> None:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(5)

    return f"http://127.0.0.1:{state['port']}", stop
