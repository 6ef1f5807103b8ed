"""Acknowledge an input to the broker only after the agent stored it.

The device SDK (azure-iot-device 2.x on paho-mqtt 1.6) hands an incoming QoS 1 message to its own pipeline and
returns from paho's ``on_message`` at once, and paho sends the PUBACK as soon as ``on_message`` returns: before
the application has seen the message. A process killed in that window loses messages the broker already
forgot. ``AckGate`` closes the window: it wraps the SDK transport's message handler so that a module input is
stored in the agent's inbox on paho's thread, before ``on_message`` returns (the SDK's pipeline never sees it;
going through it and back, four threads a message, capped a module at about 230 inputs a second), and paho's
thread waits while the inbox is full (backpressure: the broker keeps what the agent cannot take yet). Without
``store``, paho's thread instead waits until the agent's handler, reached through the SDK, calls ``stored()``.

This reaches into the SDK's private pipeline (``device_agents.sdk``); when a future SDK moves it, the gate logs
that inputs are acknowledged on receipt instead of failing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from device_agents.sdk import input_message
from device_agents.sdk import transport as sdk_transport

log = logging.getLogger("device_agents.ack")
_INPUT_TOPIC = "/inputs/"


class AckGate:
    """Holds paho's acknowledgement of each module input until ``stored()`` was called for it."""

    def __init__(self, full: Callable[[], bool], *, store: Callable[[Any], None] | None = None,
                 timeout: float = 30.0) -> None:
        self._full, self._store, self._timeout = full, store, timeout
        self._cv = threading.Condition()
        self._received = self._stored = 0
        self.installed = False

    def install(self, client: Any) -> bool:
        """Wrap ``client``'s transport handler; False (and a warning) when the SDK has no such transport."""
        transport = sdk_transport(client)
        if transport is None:
            log.warning("the device SDK's transport was not found: inputs are acknowledged when received, "
                        "before they are stored")
            return False
        original = transport.on_mqtt_message_received_handler

        def handler(topic: str, payload: bytes) -> None:
            if _INPUT_TOPIC in topic and self._store is not None:
                try:
                    message = input_message(topic, bytes(payload))
                    if message is not None:
                        self._store(message)
                        with self._cv:
                            self._cv.wait_for(lambda: not self._full(), self._timeout)
                        return
                except Exception:  # noqa: BLE001 - the SDK's own path, below, is the fallback
                    log.exception("storing an input on the network thread failed; handing it to the SDK")
            original(topic, payload)
            if _INPUT_TOPIC in topic:
                self._hold()

        transport.on_mqtt_message_received_handler = handler
        self.installed = True
        return True

    def _hold(self) -> None:
        with self._cv:
            self._received += 1
            mine = self._received
            if not self._cv.wait_for(lambda: self._stored >= mine, self._timeout):
                log.warning("an input was not stored within %.0f s; acknowledging it anyway", self._timeout)
                self._stored = max(self._stored, mine)  # the SDK dropped it: keep the counts in step
            self._cv.wait_for(lambda: not self._full(), self._timeout)

    def stored(self) -> None:
        """The agent stored one more input."""
        with self._cv:
            self._stored += 1
            self._cv.notify_all()

    def room(self) -> None:
        """The inbox has room again."""
        with self._cv:
            self._cv.notify_all()
