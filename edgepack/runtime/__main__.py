"""``python -m edgepack.runtime``: start the scoring web server of an image.

Listens at once (so liveness answers), then loads the entry script in the background; if ``init()`` fails
the process exits non-zero with the error logged, and readiness never turns 200. With ``EDGEPACK_PROCESSES=N``
(N > 1) it supervises N such servers on the same port (see ``edgepack.runtime.workers``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any, Callable

from edgepack.runtime.keys import KeyRing
from edgepack.runtime.scoring import Runtime
from edgepack.runtime.server import ScoringServer, serve
from edgepack.runtime.settings import RuntimeConfig, RuntimeSetupError
from edgepack.runtime.workers import WORKER_ENV, supervise


# An image's own start step (an FPGA image chooses its execution provider): the config to serve and what /info
# adds; raises RuntimeSetupError when the image cannot start.
Prepare = Callable[[RuntimeConfig], tuple[RuntimeConfig, dict[str, Any]]]


def main(argv: list[str] | None = None, *, prepare: Prepare | None = None, module: str = "edgepack.runtime") -> int:
    """Run the server until interrupted; returns the exit code. ``module`` is what worker processes run."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("EDGEPACK_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("EDGEPACK_PORT", "5001")))
    parser.add_argument("--config", default=None, help="runtime.json (default $EDGEPACK_RUNTIME_CONFIG)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    log = logging.getLogger("edgepack.runtime")
    try:
        config = RuntimeConfig.from_file(args.config)
        details: dict[str, Any] = {}
        if prepare is not None:
            config, details = prepare(config)
        keys = KeyRing()
        if config.auth_enabled and not keys.configured():
            raise RuntimeSetupError("key authentication is enabled but no keys are configured: set "
                                    "EDGEPACK_KEYS_FILE or EDGEPACK_PRIMARY_KEY (edgepack run does this)")
    except RuntimeSetupError as exc:
        log.error("cannot start: %s", exc)
        return 2
    env = os.environ
    processes = int(env.get("EDGEPACK_PROCESSES", "1"))
    if processes > 1 and WORKER_ENV not in env:
        return supervise(processes, list(sys.argv[1:] if argv is None else argv), module)
    runtime = Runtime(config)
    runtime.details = details
    batching = {**(config.batching or {})}
    if "EDGEPACK_MAX_BATCH" in env:
        batching["max_batch_size"] = int(env["EDGEPACK_MAX_BATCH"])
    if "EDGEPACK_MAX_WAIT_MS" in env:
        batching["max_wait_ms"] = float(env["EDGEPACK_MAX_WAIT_MS"])
    server = ScoringServer(runtime, keys, auth_enabled=config.auth_enabled,
                           workers=int(env.get("EDGEPACK_WORKERS", "8")),
                           max_pending=int(env.get("EDGEPACK_MAX_PENDING", "64")),
                           inline_budget=float(env.get("EDGEPACK_INLINE_MS", "1")) / 1000, batching=batching)
    server.worker = int(env.get(WORKER_ENV, "0"))
    reuse_port = env.get("EDGEPACK_REUSE_PORT") == "1"
    return asyncio.run(_run(server, runtime, args.host, args.port, log, reuse_port=reuse_port))


async def _run(server: ScoringServer, runtime: Runtime, host: str, port: int, log: logging.Logger, *,
               reuse_port: bool) -> int:
    failed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def load() -> None:
        try:
            runtime.start()
            log.info("model loaded; ready")
        except RuntimeSetupError as exc:
            log.error("init failed: %s", exc, exc_info=exc.__cause__)
            loop.call_soon_threadsafe(failed.set)

    if reuse_port:
        # One of several processes on the port: listen only once the model is loaded, so the kernel never hands
        # a connection to a (re)starting worker that could only answer 503 while the others are ready.
        await loop.run_in_executor(None, load)
        await asyncio.sleep(0)  # let failed.set run
        if failed.is_set():
            return 1
    listener = await serve(server, host, port, reuse_port=reuse_port)
    log.info("listening on %s:%d", host, port)
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # docker stop: finish, flush the access log, exit 0
        loop.add_signal_handler(signum, stopped.set)
    if not reuse_port:  # one process: serve liveness (and 503 for scoring) while init() runs
        threading.Thread(target=load, name="init", daemon=True).start()
    async with listener:
        await asyncio.wait([loop.create_task(failed.wait()), loop.create_task(stopped.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
    if stopped.is_set():
        log.info("stopping")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
