"""edgepack: package registered ML models as OCI images for Azure Functions, IoT Edge, FPGA and web services.

This module imports nothing: the in-image runtime (`edgepack.runtime`) is copied into images together
with this file, and must not drag the build-time library (docker, click, yaml, httpx) along.
"""

__version__ = "0.1.0"
