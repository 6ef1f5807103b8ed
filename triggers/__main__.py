"""``python -m triggers --script-root DIR [--port N]``: the local Functions host for an edgepack function app.

Indexes DIR/function_app.py with azure-functions' own ``get_functions()``, prints each function's bindings,
then serves the HTTP-triggered ones (route prefix from host.json, default ``/api``) and drives the
blob- and Service Bus-triggered ones against the storage account or namespace their connection settings
name. ``GET /`` answers 200 once
indexing succeeded and every trigger started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from edgepack.runtime.http import listen
from edgepack.runtime.keys import KeyRing
from triggers.bindings import TriggerError
from triggers.host import IndexedFunction, IndexError_, function_json, load_app
from triggers.http import HttpFunctions, HttpHost


def _extensions(script_root: str) -> dict:
    """host.json's ``extensions`` section ({} when there is none)."""
    try:
        with open(os.path.join(script_root, "host.json"), encoding="utf-8") as f:
            extensions = json.load(f).get("extensions", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return extensions if isinstance(extensions, dict) else {}


def _driver_for(fn: IndexedFunction, extensions: dict) -> Any:
    """The driver of a non-HTTP trigger, or None. The SDKs are imported only here: a blob function image has
    the storage SDK, a Service Bus one the Service Bus SDK, an HTTP one neither.

    Raises:
        TriggerError: the driver cannot start (a connection setting is missing).
    """
    kind = fn.trigger["type"]
    if kind == "blobTrigger":
        from triggers.blob import BlobTrigger

        return BlobTrigger(fn, app_name=os.environ.get("WEBSITE_SITE_NAME", "edgepack"))
    if kind == "serviceBusTrigger":
        from triggers.servicebus import DEFAULT_LOCK_RENEWAL, ServiceBusTrigger, timespan_seconds

        renewal = (extensions.get("serviceBus") or {}).get("maxAutoLockRenewalDuration", DEFAULT_LOCK_RENEWAL)
        return ServiceBusTrigger(fn, lock_renewal_seconds=timespan_seconds(renewal))
    return None


def main(argv: list[str] | None = None) -> int:
    """Index the app and serve it until interrupted; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m triggers", description=__doc__)
    parser.add_argument("--script-root", default=os.environ.get("AzureWebJobsScriptRoot", "/home/site/wwwroot"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("EDGEPACK_PORT", "80")))
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    log = logging.getLogger("triggers")
    try:
        functions = load_app(args.script_root)
    except IndexError_ as exc:
        log.error("cannot start: %s", exc)
        return 2
    for fn in functions:
        log.info("indexed %s: %s", fn.name, json.dumps(function_json(fn)["bindings"]))
    extensions = _extensions(args.script_root)
    keys = KeyRing()
    routes = HttpFunctions(functions, keys, prefix=(extensions.get("http") or {}).get("routePrefix", "api"))
    if routes.needs_keys() and not keys.configured():
        log.error("cannot start: a function requires a key but no keys are configured: set EDGEPACK_KEYS_FILE "
                  "or EDGEPACK_PRIMARY_KEY (edgepack run does this)")
        return 2
    stop = threading.Event()
    try:
        for fn in functions:
            driver = _driver_for(fn, extensions)
            if driver is not None:
                threading.Thread(target=driver.run, args=(stop,), name=f"trigger-{fn.name}", daemon=True).start()
            elif fn.trigger["type"] != "httpTrigger":
                log.warning("function %s: trigger '%s' is not driven by this host", fn.name, fn.trigger["type"])
    except TriggerError as exc:
        log.error("cannot start: %s", exc)
        return 2
    host = HttpHost(routes, functions)
    try:
        return asyncio.run(_serve(host, args.host, args.port, log))
    finally:
        stop.set()


async def _serve(host: HttpHost, address: str, port: int, log: logging.Logger) -> int:
    listener = await listen(host, address, port)
    log.info("serving %d function(s) on %s:%d", len(host.functions), address, port)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # docker stop: close the listener, stop the drivers, exit 0
        loop.add_signal_handler(signum, stopped.set)
    async with listener:
        await stopped.wait()
    log.info("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
