"""``python -m device_agents``: the module's entrypoint. Loads the entry script, opens the queues in the state
folder and runs the agent until SIGTERM (what is queued stays on disk for the next start)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from edgepack.runtime.edge import EdgeSettings
from edgepack.runtime.scoring import load_runtime
from edgepack.runtime.settings import RuntimeSetupError

from device_agents.agent import Agent, make_client
from device_agents.queues import Queues


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("azure.iot.device").setLevel(logging.WARNING)
    log = logging.getLogger("device_agents")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        runtime = load_runtime(start=False)  # the agent starts the model it will serve
        settings = EdgeSettings.from_env(runtime.config.module_input, runtime.config.module_output)
        os.makedirs(settings.state_dir, exist_ok=True)
        queues = Queues(os.path.join(settings.state_dir, "queues.db"), max_results=settings.max_results,
                        max_result_bytes=settings.max_result_bytes, sync=settings.sync)
        agent = Agent(runtime, lambda: make_client(settings), queues, settings)
        agent.start()  # loads the model and makes the first client: a bad connection string or CA fails here
    except RuntimeSetupError as exc:
        log.error("the agent cannot start: %s", exc)
        return 1
    except (OSError, ValueError) as exc:
        log.error("the agent cannot start: %s: %s", type(exc).__name__, exc)
        return 1
    log.info("agent running: input '%s' → output '%s', state in %s", settings.module_input, settings.module_output,
             settings.state_dir)
    stop.wait()
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
