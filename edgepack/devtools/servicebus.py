"""A local Azure Service Bus test broker (AMQP 1.0 on loopback) that the real azure-servicebus client (>= 7.15)
talks to with ``UseDevelopmentEmulator=true``. Test and development infrastructure: never in images.

    python -m edgepack.devtools.servicebus --port 5672 --queue requests:3:5 --queue scores

Queues are ``NAME[:MAX_DELIVERY_COUNT[:LOCK_SECONDS]]`` (defaults 10 and 30); unknown queues are created on
first use. Implemented: SASL ANONYMOUS, ``$cbs`` put-token (any token), single and batch sends, peek-lock and
receive-and-delete, 16-byte lock tokens, ``x-opt-*`` annotations, complete/abandon/dead-letter/release with the
outcome echoed, lock expiry, max delivery count -> ``<queue>/$DeadLetterQueue`` with ``DeadLetterReason``,
and ``$management`` renew-lock and peek-message. Not implemented: sessions, topics, deferral, scheduling.
"""

from __future__ import annotations

import argparse
import collections
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

try:
    from proton import Condition, Data, Delivery, Described, Link, Message, symbol, timestamp, ulong
    from proton.handlers import MessagingHandler
except ImportError as exc:  # a development tool: its AMQP library is an extra, not a dependency of edgepack
    raise ImportError("edgepack.devtools.servicebus needs python-qpid-proton: pip install 'edgepack[devtools]'") \
        from exc
from proton.reactor import Container

from edgepack.devtools import amqp

log = logging.getLogger("edgepack.devtools.servicebus")
DLQ_SUFFIX = "/$deadletterqueue"


@dataclass
class StoredMessage:
    """A message as the queue holds it: the client's bare message bytes plus broker bookkeeping."""

    seq: int
    bare: bytes
    enqueued_ms: int
    delivery_count: int = 0
    locked_until_ms: int = 0
    dead_letter_source: str | None = None


@dataclass
class Queue:
    """One entity: available messages in order, and the locked ones by lock token."""

    name: str
    max_delivery: int = 10
    lock_seconds: float = 30.0
    ready: collections.deque = field(default_factory=collections.deque)
    locked: dict[bytes, tuple[StoredMessage, Any]] = field(default_factory=dict)
    next_seq: int = 1


def _now_ms() -> int:
    return int(time.time() * 1000)


def _entity(address: str | None) -> str:
    """``amqps://host:port/Queue/$DeadLetterQueue`` -> ``queue/$deadletterqueue`` (path only, lower case)."""
    path = (address or "").split("://", 1)[-1]
    if "://" in (address or ""):
        path = path.split("/", 1)[1] if "/" in path else ""
    return path.strip("/").lower()


def _with_app_properties(bare: bytes, extra: dict[str, str]) -> bytes:
    """The bare message with ``extra`` added to its application properties (decoded and re-encoded)."""
    parts = amqp.sections(bare)
    props: dict[Any, Any] = {}
    for code, raw in parts:
        if code == amqp.APP_PROPERTIES:
            data = Data()
            data.decode(bytes(raw))
            data.rewind()
            data.next()
            props = dict(data.get_object().value)
    props.update(extra)
    out = Data()
    out.put_object(Described(ulong(amqp.APP_PROPERTIES), props))
    encoded = bytes(out.encode())
    rebuilt, placed = [], False
    for code, raw in parts:
        if code == amqp.APP_PROPERTIES:
            rebuilt.append(encoded)
            placed = True
        elif code in amqp.BARE[2:] and not placed:
            rebuilt += [encoded, raw]
            placed = True
        else:
            rebuilt.append(raw)
    return b"".join(rebuilt)


class Broker(MessagingHandler):
    """The proton handler: links, queues, settlement, locks, CBS and management."""

    def __init__(self, address: str, queues: dict[str, Queue]) -> None:
        super().__init__(prefetch=0, auto_accept=False, auto_settle=False, peer_close_is_error=False)
        self.address = address
        self.queues = queues
        self.consumers: list[Link] = []
        self.lock = threading.Lock()
        self.listening = threading.Event()

    # -- queues ----------------------------------------------------------------------------------------
    def queue(self, name: str) -> Queue:
        if name not in self.queues:
            base = name[: -len(DLQ_SUFFIX)] if name.endswith(DLQ_SUFFIX) else name
            template = self.queues.get(base)
            self.queues[name] = Queue(name, template.max_delivery if template else 10,
                                      template.lock_seconds if template else 30.0)
        return self.queues[name]

    def enqueue(self, name: str, bare: bytes) -> None:
        q = self.queue(name)
        q.ready.append(StoredMessage(q.next_seq, bare, _now_ms()))
        q.next_seq += 1

    def dead_letter(self, q: Queue, msg: StoredMessage, reason: str, description: str) -> None:
        msg.bare = _with_app_properties(msg.bare, {"DeadLetterReason": reason,
                                                   "DeadLetterErrorDescription": description})
        msg.dead_letter_source, msg.locked_until_ms = q.name, 0
        self.queue(q.name + DLQ_SUFFIX).ready.append(msg)
        log.info("dead-lettered message %d of %s: %s", msg.seq, q.name, reason)

    def give_back(self, q: Queue, msg: StoredMessage, *, count: bool) -> None:
        """Return a message after an abandon or lock expiry (counted) or a release (not counted)."""
        msg.locked_until_ms = 0
        if count:
            msg.delivery_count += 1
            if msg.delivery_count >= q.max_delivery and not q.name.endswith(DLQ_SUFFIX):
                self.dead_letter(q, msg, "MaxDeliveryCountExceeded",
                                 f"Message could not be consumed after {q.max_delivery} delivery attempts.")
                return
        q.ready.appendleft(msg)

    # -- connection and links ----------------------------------------------------------------------------
    def on_start(self, event: Any) -> None:
        self.acceptor = event.container.listen(self.address)
        event.container.schedule(0.1, self)
        self.listening.set()

    def on_timer_task(self, event: Any) -> None:
        now = _now_ms()
        for q in list(self.queues.values()):
            for token, (msg, _) in list(q.locked.items()):
                if msg.locked_until_ms and msg.locked_until_ms <= now:
                    del q.locked[token]
                    self.give_back(q, msg, count=True)
        self.pump()
        event.container.schedule(0.1, self)

    def on_link_opening(self, event: Any) -> None:
        link = event.link
        link.source.address = link.remote_source.address
        link.target.address = link.remote_target.address
        if link.is_sender:
            link.entity = _entity(link.remote_source.address)
            if link.entity not in ("$cbs",) and not link.entity.endswith("$management"):
                self.queue(link.entity)
                self.consumers.append(link)
        else:
            link.entity = _entity(link.remote_target.address)
            link.flow(1000)
        link.open()

    def on_link_closing(self, event: Any) -> None:
        if event.link in self.consumers:
            self.consumers.remove(event.link)

    def on_disconnected(self, event: Any) -> None:
        self.consumers = [c for c in self.consumers if c.connection is not event.connection]

    def on_sendable(self, event: Any) -> None:
        self.pump()

    def on_link_flow(self, event: Any) -> None:
        self.pump()

    def pump(self) -> None:
        """Deliver available messages to consumers with credit; answer drains."""
        now = _now_ms()
        for link in list(self.consumers):
            q = self.queue(link.entity)
            while link.credit > 0 and q.ready:
                msg = q.ready.popleft()
                self.deliver(link, q, msg, now)
            if link.drain_mode and link.credit > 0:
                link.drained()

    def deliver(self, link: Link, q: Queue, msg: StoredMessage, now: int) -> None:
        token = uuid.uuid4().bytes_le
        settled = link.remote_snd_settle_mode == Link.SND_SETTLED
        annotations = {"x-opt-sequence-number": ("long", msg.seq),
                       "x-opt-enqueued-time": ("timestamp", msg.enqueued_ms)}
        if not settled:
            msg.locked_until_ms = now + int(q.lock_seconds * 1000)
            annotations["x-opt-locked-until"] = ("timestamp", msg.locked_until_ms)
        if msg.dead_letter_source:
            annotations["x-opt-deadletter-source"] = ("string", msg.dead_letter_source)
        payload = amqp.header(msg.delivery_count) + amqp.message_annotations(annotations) + msg.bare
        dlv = link.delivery(token)
        dlv.lock_token = token  # proton's tag getter decodes as UTF-8; keep the bytes ourselves
        link.send(payload)
        link.advance()
        if settled:
            dlv.settle()
        else:
            q.locked[token] = (msg, dlv)

    # -- deliveries --------------------------------------------------------------------------------------
    def on_delivery(self, event: Any) -> None:
        dlv = event.delivery
        link = dlv.link
        if link.is_receiver:
            if dlv.partial:
                return
            data = bytes(link.recv(dlv.pending))
            link.advance()
            self.on_incoming(link, data)
            dlv.update(Delivery.ACCEPTED)
            dlv.settle()
            link.flow(1)
        elif dlv.updated or dlv.remote_settled:
            self.on_settlement(link, dlv)

    def on_incoming(self, link: Link, data: bytes) -> None:
        if link.entity == "$cbs":
            request = Message()
            request.decode(data)
            self.reply(link.connection, "$cbs", request, {"status-code": 202, "status-description": "Accepted"}, None)
        elif link.entity.endswith("$management"):
            self.management(link, data)
        else:
            for bare in self.split(data):
                self.enqueue(link.entity, bare)
            self.pump()

    @staticmethod
    def split(data: bytes) -> list[bytes]:
        """Bare messages of a transfer: one, or each message of a batch envelope (every data section a message)."""
        parts = amqp.sections(data)
        datas = [amqp.data_payload(raw) for code, raw in parts if code == amqp.DATA]
        if datas and all(code != 0x76 and code != 0x77 for code, _ in parts):
            try:
                inner = [amqp.sections(d) for d in datas]
                if all(any(c == amqp.PROPERTIES for c, _ in s) for s in inner):
                    return [b"".join(raw for c, raw in s if c in amqp.BARE) for s in inner]
            except (amqp.AmqpDecodeError, IndexError):
                pass
        return [b"".join(raw for code, raw in parts if code in amqp.BARE)]

    def on_settlement(self, link: Link, dlv: Delivery) -> None:
        q = self.queue(link.entity)
        token = getattr(dlv, "lock_token", None)
        entry = q.locked.pop(token, None) if token else None
        state = dlv.remote_state
        if entry is None:
            if not dlv.settled:
                dlv.local.condition = Condition(symbol("com.microsoft:message-lock-lost"), "the lock has expired")
                dlv.update(Delivery.REJECTED)
                dlv.settle()
            return
        msg, _ = entry
        if state == Delivery.ACCEPTED:
            pass
        elif state == Delivery.MODIFIED:
            self.give_back(q, msg, count=bool(dlv.remote.failed))
        elif state == Delivery.REJECTED:
            info = (dlv.remote.condition.info if dlv.remote.condition else None) or {}
            info = {str(k): str(v) for k, v in dict(info).items()}
            self.dead_letter(q, msg, info.get("DeadLetterReason", "rejected"),
                             info.get("DeadLetterErrorDescription", ""))
        else:  # released, or settled without a state: back without counting
            self.give_back(q, msg, count=False)
        if not dlv.settled:
            if state:
                dlv.update(state)
            dlv.settle()
        self.pump()

    # -- request/response nodes --------------------------------------------------------------------------
    def reply(self, connection: Any, node: str, request: Message, properties: dict, body: Any) -> None:
        """Answer a request on the same connection's reply link for ``node`` (no reply-to routing needed)."""
        mask = Link.LOCAL_ACTIVE | Link.REMOTE_ACTIVE
        link = connection.link_head(mask)
        while link is not None and not (link.is_sender and getattr(link, "entity", None) == node):
            link = link.next(mask)
        if link is None:
            log.warning("no reply link for %s", node)
            return
        response = Message(correlation_id=request.id, properties=properties, body=body)
        dlv = link.delivery(uuid.uuid4().bytes_le)
        link.send(response.encode())
        link.advance()
        dlv.settle()

    def management(self, link: Link, data: bytes) -> None:
        request = Message()
        request.decode(data)
        op = str((request.properties or {}).get("operation", ""))
        q = self.queue(link.entity.rsplit("/$management", 1)[0])
        body = request.body or {}
        if op == "com.microsoft:renew-lock":
            expirations = []
            for token in body.get("lock-tokens", []):
                entry = q.locked.get(token.bytes_le)
                if entry:
                    entry[0].locked_until_ms = _now_ms() + int(q.lock_seconds * 1000)
                    expirations.append(timestamp(entry[0].locked_until_ms))
            status, result = 200, {"expirations": expirations}
        elif op == "com.microsoft:peek-message":
            start = int(body.get("from-sequence-number", 0))
            count = int(body.get("message-count", 1))
            pending = sorted([*q.ready, *(m for m, _ in q.locked.values())], key=lambda m: m.seq)
            chosen = [m for m in pending if m.seq >= start][:count]
            encoded = [{"message": amqp.header(m.delivery_count) + amqp.message_annotations(
                {"x-opt-sequence-number": ("long", m.seq), "x-opt-enqueued-time": ("timestamp", m.enqueued_ms)})
                + m.bare} for m in chosen]
            status, result = (200, {"messages": encoded}) if encoded else (204, {})
        else:
            status, result = 501, {}
        self.reply(link.connection, link.entity, request,
                   {"statusCode": status, "statusDescription": "OK" if status < 300 else f"{op} not supported"},
                   result)


def parse_queue(spec: str) -> Queue:
    """``NAME[:MAX_DELIVERY[:LOCK_SECONDS]]``."""
    name, *rest = spec.split(":")
    return Queue(name.lower(), int(rest[0]) if rest and rest[0] else 10, float(rest[1]) if len(rest) > 1 else 30.0)


class BrokerThread:
    """Run a broker in a background thread (for tests and dev loops)."""

    def __init__(self, port: int, queues: list[str]) -> None:
        self.port = port
        self.handler = Broker(f"127.0.0.1:{port}", {q.name: q for q in map(parse_queue, queues)})
        self.container = Container(self.handler)
        self.container.allowed_mechs = "ANONYMOUS"
        self.container.sasl_enabled = True
        self.thread = threading.Thread(target=self.container.run, daemon=True, name="servicebus-broker")

    def start(self) -> "BrokerThread":
        self.thread.start()
        self.handler.listening.wait(5)
        return self

    def stop(self) -> None:
        self.container.stop()
        self.thread.join(5)
        self.handler.acceptor.close()  # the reactor has stopped; its listening socket is still open

    def connection_string(self) -> str:
        """A connection string for this broker (the key is not checked)."""
        return (f"Endpoint=sb://localhost:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
                "SharedAccessKey=local;UseDevelopmentEmulator=true;")


def main() -> None:
    """Run the broker in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m edgepack.devtools.servicebus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=5672)
    parser.add_argument("--queue", action="append", default=[], help="NAME[:MAX_DELIVERY[:LOCK_SECONDS]]")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    broker = BrokerThread(args.port, args.queue).start()
    print(broker.connection_string(), flush=True)
    broker.thread.join()


if __name__ == "__main__":
    main()
