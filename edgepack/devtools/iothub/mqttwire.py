"""The few MQTT 3.1.1 packets the local hub's gateway reads and rewrites: CONNECT (to check the identity),
PUBLISH, SUBSCRIBE and UNSUBSCRIBE (to scope IoT Hub's ``$iothub/...`` topics to the connection that uses them).
Every other packet passes through as bytes.

paho-mqtt, the only MQTT library at hand, is a client: it writes these packets but parses none of the ones a
client sends, so this reads them itself (a page of the OASIS standard, section 2 and 3).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, SUBSCRIBE, SUBACK, UNSUBSCRIBE = 1, 2, 3, 8, 9, 10
MAX_PACKET = 256 * 1024 + 4096  # IoT Hub's message limit plus the topic and properties


class WireError(Exception):
    """The peer sent something that is not MQTT 3.1.1 (or not what the local hub accepts)."""


@dataclass(frozen=True)
class Packet:
    first: int  # type << 4 | flags
    body: bytes

    @property
    def kind(self) -> int:
        return self.first >> 4

    def encode(self) -> bytes:
        return bytes([self.first]) + _varint(len(self.body)) + self.body


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


async def read_packet(reader: asyncio.StreamReader) -> Packet:
    """One packet; ``asyncio.IncompleteReadError`` when the peer closed."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    for _ in range(4):
        digit = (await reader.readexactly(1))[0]
        length |= (digit & 0x7F) << shift
        shift += 7
        if not digit & 0x80:
            break
    else:
        raise WireError("a remaining length longer than four bytes")
    if length > MAX_PACKET:
        raise WireError(f"a packet of {length} bytes")
    return Packet(first, await reader.readexactly(length))


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    if at + 2 > len(data):
        raise WireError("a string runs past the packet")
    (size,) = struct.unpack_from("!H", data, at)
    end = at + 2 + size
    if end > len(data):
        raise WireError("a string runs past the packet")
    return data[at + 2:end], end


def _pack_string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


@dataclass(frozen=True)
class Connect:
    client_id: str
    username: str | None
    password: str | None
    clean_session: bool


def parse_connect(packet: Packet) -> Connect:
    if packet.kind != CONNECT:
        raise WireError("the first packet is not CONNECT")
    data = packet.body
    name, at = _string(data, 0)
    if name != b"MQTT" or at + 4 > len(data) or data[at] != 4:
        raise WireError("only MQTT 3.1.1 (protocol level 4) is served")
    flags = data[at + 1]
    at += 4
    client_id, at = _string(data, at)
    if flags & 0x04:  # a will topic and message
        _, at = _string(data, at)
        _, at = _string(data, at)
    username = password = None
    if flags & 0x80:
        raw, at = _string(data, at)
        username = raw.decode("utf-8", "replace")
    if flags & 0x40:
        raw, at = _string(data, at)
        password = raw.decode("utf-8", "replace")
    return Connect(client_id.decode("utf-8", "replace"), username, password, bool(flags & 0x02))


def connack(return_code: int, session_present: bool = False) -> Packet:
    """0 accepted, 4 bad user name or password, 5 not authorized."""
    return Packet(CONNACK << 4, bytes([1 if session_present else 0, return_code]))


def publish_topic(packet: Packet) -> str:
    topic, _ = _string(packet.body, 0)
    return topic.decode("utf-8", "replace")


def with_topic(packet: Packet, topic: str) -> Packet:
    """The PUBLISH with another topic (packet id, payload and flags kept)."""
    _, at = _string(packet.body, 0)
    return Packet(packet.first, _pack_string(topic.encode()) + packet.body[at:])


def packet_id(packet: Packet) -> int:
    """The packet identifier of a SUBSCRIBE, SUBACK, UNSUBSCRIBE or UNSUBACK (its first two bytes)."""
    if len(packet.body) < 2:
        raise WireError("a packet without its identifier")
    return int(struct.unpack(">H", packet.body[:2])[0])


def filters(packet: Packet) -> list[str]:
    """The topic filters of a SUBSCRIBE or UNSUBSCRIBE."""
    data, at, out = packet.body, 2, []
    while at < len(data):
        raw, at = _string(data, at)
        out.append(raw.decode("utf-8", "replace"))
        if packet.kind == SUBSCRIBE:
            at += 1  # requested QoS
    return out


def with_filters(packet: Packet, new: list[str]) -> Packet:
    data, at, body = packet.body, 2, bytearray(packet.body[:2])
    for topic in new:
        _, at = _string(data, at)
        body += _pack_string(topic.encode())
        if packet.kind == SUBSCRIBE:
            body.append(data[at])
            at += 1
    return Packet(packet.first, bytes(body))
