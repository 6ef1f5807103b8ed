"""The IoT Edge module's settings: what the build bakes into runtime.json and what a deployment sets as env.

One definition for both sides: the packager writes ``module_input``/``module_output`` into the runtime config,
``edgepack deploy iot-edge`` writes the environment variables named here into the manifest, and the agent in the
image (``device_agents``) reads both through ``EdgeSettings.from_env``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from edgepack.runtime.settings import DEFAULT_MODULE_INPUT, DEFAULT_MODULE_OUTPUT, RuntimeSetupError

STATE_DIR = "EDGEPACK_STATE_DIR"  # the host-mounted volume holding the queues and models
CONNECTION_STRING = "EDGEPACK_IOTHUB_CONNECTION_STRING"  # development: a module connection string
CA_FILE = "EDGEPACK_IOTHUB_CA_FILE"  # development: the CA that signed the hub's certificate
MAX_RESULTS = "EDGEPACK_OUTBOX_MAX_MESSAGES"
MAX_RESULT_BYTES = "EDGEPACK_OUTBOX_MAX_BYTES"
SYNC = "EDGEPACK_OUTBOX_SYNC"  # normal | full
REPORT_SECONDS = "EDGEPACK_REPORT_SECONDS"
TWIN_TIMEOUT = "EDGEPACK_TWIN_TIMEOUT_SECONDS"
SEND_WINDOW = "EDGEPACK_SEND_WINDOW"  # results in flight at once (after a link cut, up to twice this repeat)
# Hot-swapped models: credentials for the registry the twin's model uri names, and a CA for its TLS.
MODEL_USERNAME = "EDGEPACK_MODEL_REGISTRY_USERNAME"
MODEL_PASSWORD = "EDGEPACK_MODEL_REGISTRY_PASSWORD"
MODEL_CA_FILE = "EDGEPACK_MODEL_CA_FILE"
# The image reference the deployment runs the module from (REF@DIGEST): the agent reports it, so a rollout of a
# new agent image can tell which devices run it (an image cannot hold its own digest).
IMAGE = "EDGEPACK_IMAGE"
DEFAULT_STATE_DIR = "/var/lib/edgepack"


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    text = env.get(name, "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise RuntimeSetupError(f"{name}={text!r} is not a number") from None
    if value < minimum:
        raise RuntimeSetupError(f"{name}={text!r} is below {minimum:g}")
    return value


@dataclass(frozen=True)
class EdgeSettings:
    """How the agent runs: module input and output names, state folder, outbox bounds, hub connection."""

    module_input: str = DEFAULT_MODULE_INPUT
    module_output: str = DEFAULT_MODULE_OUTPUT
    state_dir: str = DEFAULT_STATE_DIR
    max_results: int = 10_000
    max_result_bytes: int = 64 << 20
    sync: str = "normal"
    report_seconds: float = 30.0
    twin_timeout: float = 10.0
    send_window: int = 16
    connection_string: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    model_username: str | None = None
    model_password: str | None = field(default=None, repr=False)
    model_ca_file: str | None = None
    image: str | None = None

    @classmethod
    def from_env(cls, module_input: str, module_output: str,
                 env: Mapping[str, str] | None = None) -> "EdgeSettings":
        """The settings of a module whose config names ``module_input``/``module_output``, from ``env``.

        Raises:
            RuntimeSetupError: a setting is malformed (named in the message).
        """
        env = os.environ if env is None else env
        sync = env.get(SYNC, "normal").lower()
        if sync not in ("normal", "full"):
            raise RuntimeSetupError(f"{SYNC}={sync!r}: use 'normal' (survives a killed process) or 'full' "
                                    "(also a power cut)")
        return cls(module_input=module_input or DEFAULT_MODULE_INPUT,
                   module_output=module_output or DEFAULT_MODULE_OUTPUT,
                   state_dir=env.get(STATE_DIR) or DEFAULT_STATE_DIR,
                   max_results=int(_number(env, MAX_RESULTS, cls.max_results, 1)),
                   max_result_bytes=int(_number(env, MAX_RESULT_BYTES, cls.max_result_bytes, 1024)), sync=sync,
                   report_seconds=_number(env, REPORT_SECONDS, cls.report_seconds, 0.1),
                   twin_timeout=_number(env, TWIN_TIMEOUT, cls.twin_timeout, 0.1),
                   send_window=int(_number(env, SEND_WINDOW, cls.send_window, 1)),
                   connection_string=env.get(CONNECTION_STRING) or None, ca_file=env.get(CA_FILE) or None,
                   model_username=env.get(MODEL_USERNAME) or None, model_password=env.get(MODEL_PASSWORD) or None,
                   model_ca_file=env.get(MODEL_CA_FILE) or None, image=env.get(IMAGE) or None)
