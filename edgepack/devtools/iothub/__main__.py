"""``python -m edgepack.devtools.iothub --home DIR``: run the local hub in the foreground until SIGTERM or SIGINT
(``edgepack edge hub start`` runs it in the background)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from edgepack.devtools.iothub.hub import DEVICE_PORT, SERVICE_PORT, LocalHub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgepack.devtools.iothub")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--device-port", type=int, default=DEVICE_PORT)
    parser.add_argument("--service-port", type=int, default=SERVICE_PORT)
    parser.add_argument("--device", action="append", default=[], help="register this IoT Edge device")
    parser.add_argument("--no-modules", action="store_true", help="do not run deployments' modules on Docker")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    hub = LocalHub(args.home, device_port=args.device_port, service_port=args.service_port,
                   modules=not args.no_modules)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    hub.start()
    try:
        for device in args.device:
            hub.state.add_device(device, edge=True)
        hub.write_endpoints()
        logging.getLogger("edgepack.hub").info("ready: devices on 127.0.0.1:%d, service on %s",
                                              hub.device_port, hub.service.host)
        stop.wait()
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
