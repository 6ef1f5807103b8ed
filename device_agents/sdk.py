"""The places where the agent reaches into the device SDK's private pipeline (azure-iot-device 2.x on
paho-mqtt 1.6), kept together so a future SDK that moves them breaks one module:

- the transport's message handler, which ``device_agents.ack`` wraps to acknowledge inputs only once stored,
  and the SDK's topic parser, with which it reads an input there;
- the pipeline's ``send_output_message``, to have several results in flight at once: the client's own
  ``send_message_to_output`` waits for each acknowledgement before sending the next, so a link with a few
  milliseconds of round trip caps a module at a few hundred results a second;
- paho's CONNACK callback, wrapped here to read the *session present* flag. The SDK ignores it and never
  re-subscribes after a reconnect, relying on the server to keep the session (IoT Hub and edgeHub do). A broker
  that lost the session (a restart without persistence, a failover) then silently stops delivering inputs, twin
  patches and method calls; the agent watches the flag and reconnects with a fresh client.

- paho's socket send, wrapped so that a TLS connection the peer dropped without closing it (``SSLEOFError``,
  which paho 1.6 does not catch) counts as a lost connection instead of ending paho's network thread: the
  client then never reconnects, and the module is silent for good.

Each helper returns None or False when the SDK has no such part, and the agent says so in its log.
"""

from __future__ import annotations

import ssl
import threading
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


def send_outputs(client: Any, messages: list[tuple[Any, str]], timeout: float = 60.0) -> list[Exception | None]:
    """Send ``(message, output)`` pairs with all of them in flight at once (published in order on the one
    connection); returns each one's error, or None once the hub acknowledged it. Without the SDK part they go
    one by one through the client's own call."""
    pipeline = getattr(client, "_mqtt_pipeline", None)
    if pipeline is None or not hasattr(pipeline, "send_output_message"):
        errors: list[Exception | None] = []
        for message, output in messages:
            try:
                client.send_message_to_output(message, output)
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - handed back, in order
                errors.extend([exc] * (len(messages) - len(errors)))
                break
        return errors
    done = threading.Condition()
    waiting = object()
    results: list[Any] = [waiting] * len(messages)

    def finished(index: int) -> Callable[..., None]:
        def callback(error: Exception | None = None, **_: Any) -> None:
            with done:
                results[index] = error
                done.notify_all()
        return callback

    for index, (message, output) in enumerate(messages):
        if message.get_size() > 256 * 1024:  # the client's own check (IoT Hub's limit)
            results[index] = ValueError("a message over 256 KB")
            continue
        message.output_name = output
        pipeline.send_output_message(message, callback=finished(index))
    with done:
        done.wait_for(lambda: all(r is not waiting for r in results), timeout)
        return [TimeoutError("no acknowledgement") if r is waiting else r for r in results]


def input_message(topic: str, payload: bytes) -> Any | None:
    """The SDK's ``Message`` for a module input received on ``topic`` (properties and input name read from the
    topic by the SDK's own parser), or None when the SDK has no such parser."""
    try:
        from azure.iot.device import Message
        from azure.iot.device.iothub.pipeline import mqtt_topic_iothub
    except ImportError:
        return None
    message = Message(payload)
    mqtt_topic_iothub.extract_message_properties_from_topic(topic, message)
    message.input_name = mqtt_topic_iothub.get_input_name_from_topic(topic)
    return message


def survive_eof(client: Any) -> bool:
    """Make paho treat ``SSLEOFError`` on send as the lost connection it is. False when paho was not found."""
    paho = getattr(transport(client), "_mqtt_client", None)
    original = getattr(paho, "_sock_send", None)
    if paho is None or original is None:
        return False

    def send(buf: Any) -> Any:
        try:
            return original(buf)
        except ssl.SSLEOFError as exc:  # paho's loop handles ConnectionError: it closes and reconnects
            raise ConnectionResetError(f"the TLS connection was dropped: {exc}") from exc

    paho._sock_send = send
    return True
