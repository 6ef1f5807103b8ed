"""``timeout(seconds)``: an ``async with`` deadline. ``asyncio.timeout`` where it exists (Python 3.11+, no extra
task per await); on older interpreters a base image may carry, a cancelling timer with the same behaviour."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

if hasattr(asyncio, "timeout"):
    timeout = asyncio.timeout
else:  # pragma: no cover - Python < 3.11
    @contextlib.asynccontextmanager
    async def timeout(delay: float) -> AsyncIterator[None]:
        task = asyncio.current_task()
        fired = False

        def cancel() -> None:
            nonlocal fired
            fired = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(delay, cancel)
        try:
            yield
        except asyncio.CancelledError:
            if fired:
                raise asyncio.TimeoutError from None
            raise
        finally:
            handle.cancel()
