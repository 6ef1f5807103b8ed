"""The local IoT hub (development tooling, never in images): mosquitto over TLS on 127.0.0.1:8883 for the real
device SDK, and a responder that plays IoT Hub's side of its MQTT topics (twins, module inputs and outputs,
direct methods). See ``broker``, ``responder`` and ``linkproxy``."""
