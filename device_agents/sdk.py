"""The two places where the agent reaches into the device SDK's private pipeline (azure-iot-device 2.x on
paho-mqtt 1.6), kept together so a future SDK that moves them breaks one module:

- the transport's message handler, which ``device_agents.ack`` wraps to acknowledge inputs only once stored;
- paho's CONNACK callback, wrapped here to read the *session present* flag. The SDK ignores it and never
  re-subscribes after a reconnect, relying on the server to keep the session (IoT Hub and edgeHub do). A broker
  that lost the session (a restart without persistence, a failover) then silently stops delivering inputs, twin
  patches and method calls; the agent watches the flag and reconnects with a fresh client.

Each helper returns None or False when the SDK has no such part, and the agent says so in its log.
"""

from __future__ import annotations

from typing import Any, Callable


def transport(client: Any) -> Any | None:
    """The SDK's MQTT transport inside ``client``'s pipeline, or None."""
    stage = getattr(getattr(client, "_mqtt_pipeline", None), "_pipeline", None)
    while stage is not None:
        found = getattr(stage, "transport", None)
        if found is not None and hasattr(found, "on_mqtt_message_received_handler"):
            return found
        stage = getattr(stage, "next", None)
    return None


def watch_sessions(client: Any, on_connack: Callable[[bool], None]) -> bool:
    """Call ``on_connack(session_present)`` on paho's thread for every accepted CONNACK of ``client``, before
    the SDK learns of the connection. False when the SDK's paho client was not found."""
    paho = getattr(transport(client), "_mqtt_client", None)
    original = getattr(paho, "on_connect", None)
    if paho is None or original is None:
        return False

    def on_connect(mqtt_client: Any, userdata: Any, flags: Any, rc: int) -> None:
        if not rc:
            present = flags.get("session present") if isinstance(flags, dict) else None
            on_connack(bool(present))
        original(mqtt_client, userdata, flags, rc)

    paho.on_connect = on_connect
    return True
