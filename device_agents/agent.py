"""The on-device agent: module inputs → inbox → the entry script → outbox → the module's output.

Side effects: the hub connection (azure-iot-device), the queues' database, threads. Four loops share the work:
the SDK's handler thread stores each input (and only then lets the broker have its acknowledgement, see
``device_agents.ack``); the scorer moves inputs to results; the sender delivers results in order, retrying with
backoff and jitter while the link is down (the SDK itself queues nothing offline); the reporter patches the
reported properties. After every connect and reconnect the agent reads the twin itself, with a timeout (the
SDK's own read can be lost and never times out) and applies desired properties once per ``$version``. When a
reconnect finds that the hub forgot the session (and with it the subscriptions the SDK never renews), the agent
closes that client and connects with a new one, which subscribes afresh.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import uuid
from typing import Any, Callable

from azure.iot.device import IoTHubModuleClient, Message, MethodRequest, MethodResponse

from edgepack.runtime.edge import EdgeSettings
from edgepack.runtime.scoring import Runtime

from device_agents import sdk
from device_agents.ack import AckGate
from device_agents.fetch import Fetcher
from device_agents.models import ModelStore, ModelSwapper
from device_agents.queues import Envelope, Queues
from device_agents.scoring import MAX_BATCH, score_messages
from device_agents.shadow import ShadowStats
from device_agents.stats import Stats

log = logging.getLogger("device_agents")
REPORTED_KEY = "edgepack"  # the agent's reported properties live under this one key


def backoff(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before try ``attempt`` (1, 2, ...): exponential with full jitter, capped."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt - 1, 16)))


class CallTimeout(Exception):
    """An SDK call did not return in time (twin operations have no timeout of their own)."""


def call_with_timeout(fn: Callable[[], Any], timeout: float, name: str) -> Any:
    """``fn()`` in a daemon thread, waited for at most ``timeout`` seconds: a call the SDK never completes
    leaves a parked thread behind, not a stuck agent (nor a process that cannot exit).

    Raises:
        CallTimeout: no answer in time; whatever ``fn`` raised otherwise.
    """
    outcome: list[Any] = []
    done = threading.Event()

    def target() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the caller
            outcome.append((False, exc))
        done.set()

    threading.Thread(target=target, name=f"agent-{name}", daemon=True).start()
    if not done.wait(timeout):
        raise CallTimeout(f"{name} got no answer within {timeout:.0f} s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _envelope(message: Message) -> Envelope:
    properties = {str(k): str(v) for k, v in (message.custom_properties or {}).items()}
    data = message.data if isinstance(message.data, bytes) else str(message.data or "").encode()
    return Envelope(channel=message.input_name or "", message_id=str(message.message_id or uuid.uuid4()),
                    body=data, correlation_id=message.correlation_id, content_type=message.content_type,
                    content_encoding=message.content_encoding, properties=properties)


def _error_text(result: Envelope) -> str:
    """A failed result's error, short enough for a reported property."""
    try:
        text = str(json.loads(result.body).get("error", ""))
    except (ValueError, AttributeError):
        text = ""
    return f"{result.properties.get('status', '')}: {text or 'scoring failed'}"[:256]


def _message(result: Envelope) -> Message:
    message = Message(result.body, message_id=result.message_id, content_encoding=result.content_encoding,
                      content_type=result.content_type)
    message.correlation_id = result.correlation_id
    message.custom_properties = dict(result.properties)
    return message


class Agent:
    """Runs one module: scores its input messages with ``runtime`` and sends the results to its output.

    ``new_client`` makes a module client (``make_client``); the agent makes another when the hub lost the session.
    """

    def __init__(self, runtime: Runtime, new_client: Callable[[], Any], queues: Queues,
                 settings: EdgeSettings) -> None:
        self.runtime, self.queues, self.settings = runtime, queues, settings
        self.models = ModelSwapper(runtime, ModelStore(os.path.join(settings.state_dir, "models")),
                                   install=self._use, changed=self._report_now, fetcher=self._fetcher)
        # A candidate model scoring beside the serving one (the twin's desired ``shadow``; see device_agents.shadow)
        self.shadow = ModelSwapper(runtime, ModelStore(os.path.join(settings.state_dir, "models-shadow")),
                                   install=self._use_shadow, changed=self._report_now, fetcher=self._fetcher)
        self.shadow_runtime: Runtime | None = None
        self.shadow_wanted = False
        self.shadow_stats = ShadowStats()
        self._new_client = new_client
        self.client: Any = None
        self.gate = AckGate(lambda: queues.inbox_full, store=self._store_input)
        self.stats = Stats()
        self.status, self.last_error = "starting", ""
        self.desired_version = 0
        self._desired_lock = threading.Lock()
        self.sessions_lost = 0
        self._subscribed = False  # the current client's handlers are set (so its broker session holds them)
        self._session_lost = threading.Event()
        self._stop = threading.Event()
        self._work = threading.Event()  # inputs to score
        self._results = threading.Event()  # results to send
        self._twin_wanted = threading.Event()
        self._report_wanted = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life cycle
    def start(self) -> None:
        """Serve the model swapped in last time (or the image's), then start the loops; the connector installs
        the SDK handlers and connects, retrying until the hub answers."""
        self.runtime = self.models.restore(self.runtime)
        self.models.start()
        self.shadow.start()
        self._attach()
        self._twin_wanted.set()
        for name, loop in (("scorer", self._score_loop), ("sender", self._send_loop),
                           ("connector", self._connect_loop), ("reporter", self._report_loop)):
            thread = threading.Thread(target=loop, name=f"agent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._work.set()  # inputs a previous run stored but did not score
        self._results.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loops and close the connection; what is queued stays on disk for the next start."""
        if self._stop.is_set():
            return
        self._stop.set()
        for event in (self._work, self._results, self._twin_wanted, self._report_wanted):
            event.set()
        self.gate.room()
        self.models.stop()
        self.shadow.stop()
        for thread in self._threads:
            thread.join(timeout)
        try:
            call_with_timeout(self.client.shutdown, timeout, "shutdown")
        except Exception as exc:  # shutting down anyway
            log.info("closing the hub connection: %s", exc)
        self.queues.close()

    def _use(self, runtime: Runtime) -> None:
        """Score with ``runtime`` from the next batch on (a batch being scored finishes on the old one)."""
        self.runtime = runtime
        self.stats.new_window()  # the error rate and p99 a rollout's gate reads are the new model's

    def _use_shadow(self, runtime: Runtime) -> None:
        """Score every input with ``runtime`` too, from the next batch on, and compare (unless the shadow ended)."""
        if not self.shadow_wanted:
            return
        self.shadow_stats.reset()
        self.shadow_runtime = runtime

    def _fetcher(self, stop: threading.Event) -> Fetcher:
        s = self.settings
        return Fetcher(username=s.model_username, password=s.model_password, ca_file=s.model_ca_file, stop=stop)

    def _attach(self) -> None:
        """Make a client and watch it: acknowledgements, connection changes, and sessions the hub forgot."""
        client = self._new_client()
        self.gate = AckGate(lambda: self.queues.inbox_full, store=self._store_input)
        self.gate.install(client)
        if not sdk.watch_sessions(client, self._on_connack):
            log.warning("the device SDK's MQTT client was not found: a hub that loses this module's session will "
                        "not be noticed")
        if not sdk.survive_eof(client):
            log.warning("the device SDK's MQTT client was not found: a TLS connection dropped mid-write may end "
                        "its network thread")
        # Setting a handler makes the SDK connect to enable its feature: watch the connection first.
        client.on_connection_state_change = self._on_connection_change
        self._subscribed = False
        self.client = client

    def _renew_client(self) -> None:
        """Close the client whose session the hub forgot and attach a new one (the same identity: the old one
        must be gone first, or the two would keep taking the session from each other)."""
        self.sessions_lost += 1
        log.warning("the hub forgot this module's session and its subscriptions; reconnecting with a new client")
        old = self.client
        try:
            call_with_timeout(old.shutdown, self.settings.twin_timeout, "shutdown")
        except Exception as exc:  # replaced anyway
            log.info("closing the old hub connection: %s", exc)
        self._session_lost.clear()
        self._attach()

    # -- handlers (SDK threads)
    def _on_connack(self, session_present: bool) -> None:
        if self._subscribed and not session_present:
            self._session_lost.set()
            self._twin_wanted.set()  # wakes the connector

    def _store_input(self, message: Message) -> None:
        """An input, on paho's thread before it is acknowledged (see ``device_agents.ack``)."""
        self.queues.take(_envelope(message))
        self.stats.received()
        self._work.set()

    def _on_input(self, message: Message) -> None:
        """An input through the SDK's handler (when the gate could not take it on paho's thread)."""
        self._store_input(message)
        self.gate.stored()

    def _on_connection_change(self) -> None:
        if self.client.connected:
            log.info("connected to the hub")
            self._twin_wanted.set()
            self._results.set()
        else:
            log.info("disconnected from the hub; results wait in the outbox")

    def _on_desired(self, patch: dict[str, Any]) -> None:
        self._apply_desired(patch)

    def _on_method(self, request: MethodRequest) -> None:
        status, payload = self.method(request.name, request.payload)
        try:
            self.client.send_method_response(MethodResponse.create_from_method_request(request, status, payload))
        except Exception as exc:
            log.warning("answering method %s: %s", request.name, exc)

    def method(self, name: str, payload: Any) -> tuple[int, Any]:
        """Direct methods: ``ping``, ``stats``, ``score`` (one message, answered at once, not queued) and
        ``rollback`` (serve the previous model again)."""
        if name == "ping":
            return 200, {"pong": True, "status": self.status, "uptimeSeconds": self.stats.snapshot()["uptimeSeconds"]}
        if name == "stats":
            return 200, self.reported()
        if name == "score":
            body = payload if isinstance(payload, str) else json.dumps(payload)
            response = self.runtime.score(body.encode(), "application/json")
            try:
                answer = json.loads(response.body)
            except ValueError:
                answer = response.body.decode("utf-8", "replace")
            return response.status, answer
        if name == "rollback":
            return self.models.rollback()
        return 404, {"error": f"no method '{name}'; the agent has ping, stats, score and rollback"}

    # -- desired state
    def _apply_desired(self, desired: dict[str, Any], *, full: bool = False) -> None:
        """Apply desired properties: a patch, or (``full``) the whole desired document of a twin read."""
        with self._desired_lock:  # a patch (SDK thread) and a twin read (connector) apply in version order
            self._apply_desired_locked(desired, full=full)

    def _apply_desired_locked(self, desired: dict[str, Any], *, full: bool) -> None:
        version = int(desired.get("$version", 0) or 0)
        if version and version <= self.desired_version:
            return  # seen already (the twin read after a reconnect repeats what patches brought)
        self.desired_version = version
        if "model" in desired or full:  # absent from the twin or null in a patch: the image's own model
            self.models.want(desired.get("model"))
        if desired.get("shadow") is not None:
            self.shadow_wanted = True
            self.shadow.want(desired["shadow"])
        elif self.shadow_wanted and ("shadow" in desired or full):  # ended: null in a patch, absent from the twin
            self.shadow_wanted, self.shadow_runtime = False, None
            self.shadow.forget()
            self.shadow_stats.reset()
        log.info("desired properties version %d applied", version)
        self._report_now()

    # -- loops
    def _install_handlers(self) -> None:
        """Set the SDK handlers; each enables its feature, which connects, so this fails while the hub is out of
        reach (a module that starts offline) and is tried again."""
        self.client.on_message_received = self._on_input
        self.client.on_method_request_received = self._on_method
        self.client.on_twin_desired_properties_patch_received = self._on_desired

    def _connect_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            if self._session_lost.is_set():
                self._renew_client()
            if not self._subscribed:
                try:
                    self._install_handlers()
                    self._subscribed = True
                except Exception as exc:
                    attempt += 1
                    wait = backoff(attempt, cap=10.0)
                    log.info("the hub is out of reach (%s); trying again in %.1f s", type(exc).__name__, wait)
                    self._stop.wait(wait)
                    continue
            if not self.client.connected:
                try:
                    self.client.connect()
                    attempt = 0
                except Exception as exc:
                    attempt += 1
                    wait = backoff(attempt, cap=10.0)
                    log.info("connecting to the hub failed (%s); trying again in %.1f s", exc, wait)
                    self._stop.wait(wait)
                    continue
                self._twin_wanted.set()
            if self._twin_wanted.wait(1.0) and not self._stop.is_set():
                self._twin_wanted.clear()
                self._read_twin()

    def _read_twin(self) -> None:
        try:
            twin = call_with_timeout(self.client.get_twin, self.settings.twin_timeout, "get-twin")
        except CallTimeout:
            log.info("the twin did not come within %.0f s; asking again", self.settings.twin_timeout)
            self._twin_wanted.set()
            return
        except Exception as exc:
            log.info("reading the twin failed (%s); asking again", exc)
            self._stop.wait(1.0)
            self._twin_wanted.set()
            return
        self._apply_desired(twin.get("desired") or {}, full=True)
        if self.status == "starting":
            self.status = "running"
            self._report_now()

    def _score_loop(self) -> None:
        while not self._stop.is_set():
            batch = self.queues.inputs(MAX_BATCH)
            if not batch:
                self._work.wait(1.0)
                self._work.clear()
                continue
            scored = score_messages(self.runtime, batch, module_input=self.settings.module_input,
                                    output=self.settings.module_output)
            candidate = self.shadow_runtime
            if candidate is not None and self.shadow.current.digest != self.models.current.digest:
                self.shadow_stats.compare(scored, score_messages(candidate, batch,
                                                                 module_input=self.settings.module_input,
                                                                 output=self.settings.module_output))
            dropped = self.queues.settle(batch, [s.result for s in scored])
            if dropped:
                log.warning("the outbox is full: dropped the %d oldest results (%d in all)", dropped,
                            self.queues.dropped)
            for item in scored:
                self.stats.scored_one(item.seconds, item.failed)
                if item.failed:
                    self.last_error = _error_text(item.result)
            self.gate.room()
            self._results.set()

    def _send_loop(self) -> None:
        """Results go out oldest first, up to ``send_window`` in flight (to hide a link's round trip); only the
        acknowledged ones from the oldest on are forgotten, so after a failure everything from the first
        unacknowledged result is sent again, in order: duplicates, countable by id, rather than gaps. After a cut
        each may arrive twice more (paho sends its unacknowledged publishes again, and so does the agent)."""
        attempt = 0
        while not self._stop.is_set():
            pending = self.queues.pending(self.settings.send_window)
            if not pending:
                self._results.wait(1.0)
                self._results.clear()
                continue
            if not self.client.connected:
                # Not while the link is down: the SDK would connect for the first of a window and could fail
                # it while a later one goes through on the next connection, out of order. The connection
                # handler wakes this loop when the link is back.
                self._results.clear()
                self._results.wait(1.0)
                continue
            errors = sdk.send_outputs(self.client, [(_message(r), r.channel) for r in pending])
            acknowledged = next((i for i, error in enumerate(errors) if error is not None), len(errors))
            if acknowledged:
                self.queues.delivered(pending[:acknowledged])
                self.stats.sent(acknowledged)
                attempt = 0
            if acknowledged < len(pending):
                attempt += 1
                wait = backoff(attempt)
                log.info("sending result %s failed (%s); retrying in %.1f s", pending[acknowledged].message_id,
                         errors[acknowledged], wait)
                self._results.clear()
                self._results.wait(wait)  # a reconnect wakes it early

    def _report_loop(self) -> None:
        while not self._stop.is_set():
            self._report_wanted.wait(self.settings.report_seconds)
            self._report_wanted.clear()
            if self._stop.is_set() or not self.client.connected:
                continue
            document = {REPORTED_KEY: self.reported()}
            try:
                call_with_timeout(lambda: self.client.patch_twin_reported_properties(document),
                                  self.settings.twin_timeout, "report")
            except Exception as exc:
                log.info("reporting properties failed: %s", exc)

    def reported(self) -> dict[str, Any]:
        """The reported-properties document (under ``edgepack``)."""
        depth, depth_bytes = self.queues.depth()
        return {"model": self.models.reported(), "image": self.settings.image,
                "status": self.status, "lastError": self.last_error, "desiredVersion": self.desired_version,
                **self.stats.snapshot(), "outboxDepth": depth, "outboxBytes": depth_bytes,
                "inboxDepth": self.queues.input_depth, "dropped": self.queues.dropped,
                "sessionsLost": self.sessions_lost, "ackAfterStore": self.gate.installed,
                "shadow": self._shadow_report()}

    def _shadow_report(self) -> dict[str, Any] | None:
        """The candidate's part of the reported properties (None, which deletes it, when there is none)."""
        if not self.shadow_wanted:
            return None
        model = self.shadow.reported()
        return {"version": model["version"] if model["digest"] else None, "digest": model["digest"],
                **{k: model[k] for k in ("status", "lastError", "desiredDigest", "refused")},
                **self.shadow_stats.snapshot()}

    def _report_now(self) -> None:
        """Ask the reporter for a report now (never blocks: SDK handler threads call it)."""
        self._report_wanted.set()


def make_client(settings: EdgeSettings, factory: Any = IoTHubModuleClient) -> Any:
    """The module client: from the IoT Edge environment in a module, or from a connection string."""
    if settings.connection_string:
        ca = None
        if settings.ca_file:
            with open(settings.ca_file, encoding="utf-8") as f:
                ca = f.read()
        return factory.create_from_connection_string(settings.connection_string, server_verification_cert=ca)
    return factory.create_from_edge_environment()
