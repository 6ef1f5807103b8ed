"""Just enough of the AMQP 1.0 type encoding for the test broker: split and build message sections.

A message on the wire is a run of described sections (header 0x70, delivery annotations 0x71, message
annotations 0x72, properties 0x73, application properties 0x74, data 0x75, sequence 0x76, value 0x77,
footer 0x78). The broker keeps the client's bare message bytes as they are and writes the header and
annotations itself (proton drops default header fields, which the Service Bus client needs).
"""

from __future__ import annotations

import struct
from typing import Any

HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES, APP_PROPERTIES = 0x70, 0x71, 0x72, 0x73, 0x74
DATA, FOOTER = 0x75, 0x78
BARE = (PROPERTIES, APP_PROPERTIES, DATA, 0x76, 0x77)


class AmqpDecodeError(ValueError):
    """The bytes are not a sequence of AMQP values."""


def skip(buf: bytes, i: int) -> int:
    """Index just past the AMQP value starting at ``i``."""
    try:
        c = buf[i]
    except IndexError as exc:
        raise AmqpDecodeError("truncated value") from exc
    i += 1
    if c == 0x00:
        return skip(buf, skip(buf, i))
    width = {0x40: 0, 0x50: 1, 0x60: 2, 0x70: 4, 0x80: 8, 0x90: 16}.get(c & 0xF0)
    if width is not None:
        end = i + width
    elif c & 0xF0 in (0xA0, 0xC0, 0xE0):
        end = i + 1 + buf[i]
    elif c & 0xF0 in (0xB0, 0xD0, 0xF0):
        end = i + 4 + int.from_bytes(buf[i:i + 4], "big")
    else:
        raise AmqpDecodeError(f"unknown constructor 0x{c:02x}")
    if end > len(buf):
        raise AmqpDecodeError("truncated value")
    return end


def sections(buf: bytes) -> list[tuple[int, bytes]]:
    """Split an encoded message into (section code, section bytes)."""
    out, i = [], 0
    while i < len(buf):
        if buf[i] != 0x00:
            raise AmqpDecodeError("a section must be a described value")
        if buf[i + 1] == 0x53:
            code = buf[i + 2]
        elif buf[i + 1] == 0x80:
            code = int.from_bytes(buf[i + 2:i + 10], "big")
        else:
            raise AmqpDecodeError("unsupported section descriptor")
        end = skip(buf, i)
        out.append((code, buf[i:end]))
        i = end
    return out


def data_payload(section: bytes) -> bytes:
    """The binary inside a data section (``0x00 0x53 0x75 vbin``)."""
    c = section[3]
    start = 5 if c == 0xA0 else 8
    return section[start:]


def _symbol(name: str) -> bytes:
    raw = name.encode()
    return bytes([0xA3, len(raw)]) + raw


def _value(value: Any) -> bytes:
    kind, v = value
    if kind == "long":
        return b"\x81" + struct.pack(">q", v)
    if kind == "timestamp":
        return b"\x83" + struct.pack(">q", v)
    if kind == "string":
        raw = v.encode()
        return (bytes([0xA1, len(raw)]) if len(raw) < 256 else b"\xb1" + struct.pack(">I", len(raw))) + raw
    raise ValueError(kind)


def header(delivery_count: int) -> bytes:
    """A header section that always carries delivery-count (durable false, priority 4, first-acquirer false)."""
    fields = b"\x42" + b"\x50\x04" + b"\x40" + b"\x42" + b"\x70" + struct.pack(">I", delivery_count)
    return b"\x00\x53\x70\xc0" + bytes([len(fields) + 1, 5]) + fields


def message_annotations(values: dict[str, tuple[str, Any]]) -> bytes:
    """A message-annotations section with symbol keys."""
    body = b"".join(_symbol(k) + _value(v) for k, v in values.items())
    return b"\x00\x53\x72\xd1" + struct.pack(">II", len(body) + 4, 2 * len(values)) + body
