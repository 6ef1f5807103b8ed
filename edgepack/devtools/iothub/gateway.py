"""The local hub's front door for devices: TLS on 127.0.0.1 with the hub's certificate, the SAS token of every
MQTT connection checked against the identities the hub knows (mosquitto would take any password), and IoT Hub's
per-connection topics made per identity. A broker shares ``$iothub/twin/...`` and ``$iothub/methods/...``
between every client, so twin answers, desired patches and method calls would reach every device; here a
client's ``$iothub/X`` is ``$hub/devices/D[/modules/M]/X`` on the broker, and back. A client may publish only to
its own ``devices/D[/modules/M]/messages/events`` and subscribe only to its own topics; anything else closes the
connection, as IoT Hub does.

Side effects: an asyncio loop in a thread serving 127.0.0.1:``port``, one broker connection per client.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from typing import Callable

from edgepack.devtools.iothub import mqttwire as wire
from edgepack.devtools.iothub.certs import HubCertificates

log = logging.getLogger(__name__)

Authenticate = Callable[[str | None, str | None], tuple[str, str | None]]
Presence = Callable[[str, str | None, bool], None]
Subscribed = Callable[[str, str | None, list[str]], None]


def scope(device: str, module: str | None) -> str:
    """The broker-side prefix of one identity's ``$iothub/`` topics."""
    return f"$hub/devices/{device}/" + (f"modules/{module}/" if module else "")


def unscope(topic: str) -> tuple[str, str | None, str] | None:
    """(device, module, rest after ``$iothub/``) of a scoped topic, or None."""
    if not topic.startswith("$hub/devices/"):
        return None
    parts = topic[len("$hub/devices/"):].split("/")
    if len(parts) >= 3 and parts[1] == "modules":
        return parts[0], parts[2], "/".join(parts[3:])
    return parts[0], None, "/".join(parts[1:])


class _Refused(Exception):
    pass


class Gateway:
    """Devices connect here; the broker listens on plain 127.0.0.1:``broker_port``."""

    def __init__(self, certs: HubCertificates, broker_port: int, authenticate: Authenticate, *, port: int = 0,
                 presence: Presence | None = None, subscribed: Subscribed | None = None) -> None:
        self.broker_port, self._authenticate, self._presence = broker_port, authenticate, presence
        self._subscribed = subscribed
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(certs.cert), str(certs.key))
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.base_events.Server | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(port,), name="hub-gateway", daemon=True)
        self.port = 0

    def start(self) -> "Gateway":
        self._thread.start()
        self._ready.wait(10)
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._client, "127.0.0.1", port, ssl=self._context, reuse_address=True))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        identity = None
        up_writer = None
        try:
            first = await asyncio.wait_for(wire.read_packet(reader), 30)
            connect = wire.parse_connect(first)
            try:
                identity = self._authenticate(connect.username, connect.password)
            except Exception as exc:  # noqa: BLE001 - any refusal is a CONNACK, not a crash
                log.info("refused %s: %s", connect.client_id, exc)
                writer.write(wire.connack(5).encode())
                await writer.drain()
                return
            expected = identity[0] + (f"/{identity[1]}" if identity[1] else "")
            if connect.client_id != expected:
                writer.write(wire.connack(2).encode())  # identifier rejected
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
            up_writer.write(first.encode())
            if self._presence:
                self._presence(identity[0], identity[1], True)
            await self._pump(reader, writer, up_reader, up_writer, *identity)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, OSError, ssl.SSLError):
            pass
        except (wire.WireError, _Refused) as exc:
            log.info("closed a device connection: %s", exc)
        finally:
            if identity and self._presence:
                self._presence(identity[0], identity[1], False)
            for w in (writer, up_writer):
                if w is not None:
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter,
                    device: str, module: str | None) -> None:
        prefix = scope(device, module)
        own = f"devices/{device}/" + (f"modules/{module}/" if module else "")

        def outward(topic: str) -> str:
            if topic.startswith("$iothub/"):
                return prefix + topic[len("$iothub/"):]
            if topic.startswith(own):
                return topic
            raise _Refused(f"{own[:-1]} used the topic {topic!r}, which is not its own")

        awaiting: dict[int, list[str]] = {}  # SUBSCRIBE packet id -> its topics, until the broker's SUBACK

        async def up() -> None:
            while True:
                packet = await wire.read_packet(reader)
                if packet.kind == wire.PUBLISH:
                    topic = wire.publish_topic(packet)
                    if not (topic.startswith("$iothub/") or topic.startswith(own + "messages/events")):
                        raise _Refused(f"{own[:-1]} published to {topic!r}")
                    packet = wire.with_topic(packet, outward(topic))
                elif packet.kind in (wire.SUBSCRIBE, wire.UNSUBSCRIBE):
                    topics = [outward(t) for t in wire.filters(packet)]
                    packet = wire.with_filters(packet, topics)
                    if packet.kind == wire.SUBSCRIBE and self._subscribed:
                        # told once the broker acknowledges it (its SUBACK, below): only then does a message
                        # published for these topics reach this session rather than no one
                        awaiting[wire.packet_id(packet)] = topics
                elif packet.kind == wire.CONNECT:
                    raise _Refused("a second CONNECT")
                up_writer.write(packet.encode())
                await up_writer.drain()

        async def down() -> None:
            while True:
                packet = await wire.read_packet(up_reader)
                if packet.kind == wire.SUBACK and self._subscribed and wire.packet_id(packet) in awaiting:
                    self._subscribed(device, module, awaiting.pop(wire.packet_id(packet)))
                if packet.kind == wire.PUBLISH:
                    topic = wire.publish_topic(packet)
                    if topic.startswith(prefix):
                        packet = wire.with_topic(packet, "$iothub/" + topic[len(prefix):])
                writer.write(packet.encode())
                await writer.drain()

        tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() and not isinstance(task.exception(), (asyncio.IncompleteReadError,
                                                                           ConnectionError)):
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
