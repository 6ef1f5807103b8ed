"""The local hub's query language and MQTT packet rewriting, as pure functions."""

from __future__ import annotations

import asyncio

import pytest

from edgepack.devtools.iothub import mqttwire as wire
from edgepack.devtools.iothub.gateway import scope, unscope
from edgepack.devtools.iothub.query import QueryError, condition, parse_query

TWINS = [
    {"deviceId": "a", "tags": {"ring": "canary", "site": {"floor": 2}}, "capabilities": {"iotEdge": True},
     "properties": {"reported": {"edgepack": {"model": {"version": 3}, "p99Ms": 12.5}}}},
    {"deviceId": "b", "tags": {"ring": "ring1"}, "capabilities": {"iotEdge": True}, "properties": {"reported": {}}},
    {"deviceId": "it's", "tags": {}, "capabilities": {"iotEdge": False}, "properties": {"reported": {}}},
]


@pytest.mark.parametrize("text, matches", [
    ("tags.ring='canary'", ["a"]),
    ("tags.ring IN ['canary', 'ring1']", ["a", "b"]),
    ("tags.ring NOT IN ['canary']", ["b"]),  # an absent tag is not "not in"
    ("NOT tags.ring = 'canary'", ["b", "it's"]),
    ("tags.site.floor >= 2 AND capabilities.iotEdge = true", ["a"]),
    ("properties.reported.edgepack.p99Ms < 20.0 OR deviceId = 'it''s'", ["a", "it's"]),
    ("(tags.ring = 'ring1' OR tags.ring = 'canary') AND NOT IS_DEFINED(properties.reported.edgepack)", ["b"]),
    ("tags.site.floor > '1'", []),  # a number is never compared with a string
    ("*", ["a", "b", "it's"]),
])
def test_target_conditions(text, matches):
    assert [t["deviceId"] for t in TWINS if condition(text)(t)] == matches


def test_queries_select_fields_count_and_refuse_what_they_cannot_read():
    assert parse_query("SELECT * FROM devices WHERE tags.ring = 'ring1'").run(TWINS) == [TWINS[1]]
    assert parse_query("SELECT COUNT() AS total FROM devices WHERE capabilities.iotEdge = true").run(TWINS) == \
        [{"total": 2}]
    picked = parse_query("SELECT deviceId, properties.reported.edgepack.model.version FROM devices.modules"
                         " WHERE IS_DEFINED(properties.reported.edgepack)").run(TWINS)
    assert picked == [{"deviceId": "a", "version": 3}]
    for bad in ("SELECT * FROM jobs", "SELECT * FROM devices WHERE", "SELECT * FROM devices WHERE tags.x ~ 1",
                "SELECT * FROM devices WHERE tags.x = 1 extra"):
        with pytest.raises(QueryError):
            parse_query(bad)


def _read(data: bytes) -> wire.Packet:
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await wire.read_packet(reader)
    return asyncio.run(go())


def _s(text: str) -> bytes:
    return len(text.encode()).to_bytes(2, "big") + text.encode()


def test_packets_are_read_and_their_topics_rewritten_byte_exactly():
    payload = b"x" * 300  # a remaining length of two bytes
    body = _s("$iothub/twin/GET/?$rid=7") + (5).to_bytes(2, "big") + payload
    packet = _read(wire.Packet(wire.PUBLISH << 4 | 0x02, body).encode())
    assert wire.publish_topic(packet) == "$iothub/twin/GET/?$rid=7"
    moved = wire.with_topic(packet, scope("dev-1", "m") + "twin/GET/?$rid=7")
    assert unscope(wire.publish_topic(moved)) == ("dev-1", "m", "twin/GET/?$rid=7")
    assert moved.body.endswith((5).to_bytes(2, "big") + payload)  # packet id and payload untouched
    assert _read(moved.encode()) == moved
    assert unscope(scope("dev-1", None) + "methods/POST/ping/?$rid=1") == ("dev-1", None, "methods/POST/ping/?$rid=1")

    subscribe = wire.Packet(wire.SUBSCRIBE << 4 | 0x02, b"\x00\x09" + _s("$iothub/twin/res/#") + b"\x00"
                            + _s("$iothub/methods/POST/#") + b"\x01")
    assert wire.filters(subscribe) == ["$iothub/twin/res/#", "$iothub/methods/POST/#"]
    scoped = wire.with_filters(subscribe, ["a/#", "b/#"])
    assert wire.filters(scoped) == ["a/#", "b/#"] and scoped.body[:2] == b"\x00\x09" and scoped.body[-1] == 1

    with pytest.raises(wire.WireError, match="3.1.1"):
        wire.parse_connect(wire.Packet(wire.CONNECT << 4, _s("MQTT") + b"\x05\x02\x00\x3c" + _s("c")))
    connect = wire.parse_connect(wire.Packet(wire.CONNECT << 4, _s("MQTT") + b"\x04\xc2\x00\x3c" + _s("d/m")
                                             + _s("u") + _s("pw")))
    assert (connect.client_id, connect.username, connect.password, connect.clean_session) == ("d/m", "u", "pw", True)
