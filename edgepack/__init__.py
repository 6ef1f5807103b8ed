"""edgepack: package registered ML models as OCI images for Azure Functions, IoT Edge, FPGA and web services.

This module imports nothing but ``os``: the in-image runtime (`edgepack.runtime`) is copied into images together
with this file, and must not drag the build-time library (docker, click, yaml, httpx) along.

onnxruntime (1.32) records a device id and usage in ``~/.cache/Microsoft/DeveloperTools`` on every session it
opens unless ``ORT_DISABLE_TELEMETRY`` is set: edgepack sets it, here, before anything imports onnxruntime, so
neither the CLI on a user's machine nor a scoring image writes there (a user who set it keeps their value).
"""

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
