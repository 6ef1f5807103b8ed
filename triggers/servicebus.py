"""The Service Bus queue trigger of the local host: peek-lock receive, invoke, then complete or abandon.

Side effects: Azure Service Bus (or the local test broker) through azure-servicebus. As the Functions host
does: a message is completed after the function (and its output message) succeeded and abandoned when the
function raised, so the queue's max delivery count moves a message that always fails to the dead-letter
queue; the locks of received messages are renewed until they are settled, up to host.json's
``maxAutoLockRenewalDuration`` (a slow batch is not delivered twice); messages of a host that dies stay locked
and come back when their lock expires (nothing is lost).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Any, Mapping

from azure.functions.servicebus import ServiceBusMessage as FunctionMessage
from azure.servicebus import AutoLockRenewer, ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.exceptions import MessageLockLostError

from triggers.bindings import OutValue, TriggerError, resolve_settings
from triggers.host import IndexedFunction

log = logging.getLogger("triggers.servicebus")
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)")
DEFAULT_LOCK_RENEWAL = "00:05:00"  # the Functions host's default maxAutoLockRenewalDuration


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def timespan_seconds(value: Any) -> float:
    """Seconds of a host.json TimeSpan (``[d.]hh:mm:ss[.fff]``).

    Raises:
        TriggerError: the value is not a TimeSpan.
    """
    match = _TIMESPAN.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        raise TriggerError(f"host.json: {value!r} is not a TimeSpan (hint: write hh:mm:ss, e.g. 00:05:00)")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def function_message(msg: ServiceBusReceivedMessage) -> FunctionMessage:
    """The message as the Python worker hands it to a function (metadata included)."""
    props = {_text(k): _text(v) for k, v in (msg.application_properties or {}).items()}
    return FunctionMessage(
        body=b"".join(msg.body) if not isinstance(msg.body, bytes) else msg.body, message_id=msg.message_id or "",
        application_properties=props, user_properties=props, content_type=msg.content_type,
        correlation_id=msg.correlation_id, delivery_count=(msg.delivery_count or 0) + 1,
        enqueued_time_utc=msg.enqueued_time_utc, locked_until=msg.locked_until_utc, lock_token=str(msg.lock_token),
        sequence_number=msg.sequence_number, dead_letter_reason=msg.dead_letter_reason,
        dead_letter_error_description=msg.dead_letter_error_description, subject=msg.subject,
        reply_to=msg.reply_to, session_id=msg.session_id, partition_key=msg.partition_key, to=msg.to)


class ServiceBusTrigger:
    """Drives one Service Bus queue-triggered function."""

    def __init__(self, fn: IndexedFunction, *, env: Mapping[str, str] | None = None, batch: int = 16,
                 wait_seconds: float = 1.0, lock_renewal_seconds: float | None = None) -> None:
        env = dict(os.environ if env is None else env)
        trigger = fn.trigger
        setting = trigger.get("connection") or "AzureWebJobsServiceBus"
        if not env.get(setting):
            raise TriggerError(f"function '{fn.name}': connection setting '{setting}' is not set "
                               "(give the Service Bus connection string, e.g. edgepack run --env)")
        self.fn, self.batch, self.wait = fn, batch, wait_seconds
        self.lock_renewal = timespan_seconds(DEFAULT_LOCK_RENEWAL) if lock_renewal_seconds is None \
            else lock_renewal_seconds
        self.queue = resolve_settings(trigger["queueName"], env)
        self.input_name = trigger["name"]
        output = next((b for b in fn.bindings if b["type"] == "serviceBus" and b["direction"] == "OUT"), None)
        self.output = (output["name"], resolve_settings(output["queueName"], env)) if output else None
        out_setting = (output or {}).get("connection") or setting
        self.client = ServiceBusClient.from_connection_string(env[setting])
        self.out_client = self.client if out_setting == setting else ServiceBusClient.from_connection_string(
            env[out_setting])

    def run(self, stop: threading.Event) -> None:
        """Receive and process until ``stop`` is set; connection errors are logged and retried."""
        log.info("service bus trigger %s watching queue %s", self.fn.name, self.queue)
        while not stop.is_set():
            renewer = AutoLockRenewer(max_lock_renewal_duration=self.lock_renewal, max_workers=1)
            try:
                with self.client.get_queue_receiver(self.queue, auto_lock_renewer=renewer) as receiver:
                    sender = self.out_client.get_queue_sender(self.output[1]) if self.output else None
                    try:
                        while not stop.is_set():
                            for msg in receiver.receive_messages(max_message_count=self.batch,
                                                                 max_wait_time=self.wait):
                                self.process(receiver, sender, msg)
                    finally:  # the renewer first: a renewal in flight must not meet a closed receiver
                        renewer.close()
                        if sender is not None:
                            sender.close()
            except Exception:  # noqa: BLE001 - a broken link must not stop the host; it reconnects
                log.exception("service bus trigger %s: connection failed; reconnecting", self.fn.name)
                renewer.close()
                stop.wait(1.0)

    def process(self, receiver: Any, sender: Any, msg: ServiceBusReceivedMessage) -> None:
        """Invoke the function for one message, send its output, then settle the message."""
        started = time.perf_counter()
        out = OutValue()
        kwargs: dict[str, Any] = {self.input_name: function_message(msg)}
        if self.output:
            kwargs[self.output[0]] = out
        try:
            self.fn.call(**kwargs)
            if sender is not None and out.value is not None:
                sender.send_messages(ServiceBusMessage(out.value, content_type="application/json",
                                                       correlation_id=msg.message_id))
        except Exception as exc:  # noqa: BLE001 - the user function may raise anything: abandon, count a try
            settle, outcome = receiver.abandon_message, f"abandoned (delivery {(msg.delivery_count or 0) + 1}): {exc}"
        else:
            settle, outcome = receiver.complete_message, "completed"
        try:
            settle(msg)
        except MessageLockLostError:  # the queue gives it to a receiver again: at least once, as the host does
            outcome = "not settled: its lock was lost, it will be delivered again"
        log.info("invoked %s on message %s: %s, %.1fms", self.fn.name, msg.message_id, outcome,
                 (time.perf_counter() - started) * 1000)
