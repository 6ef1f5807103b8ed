"""The agent's reaches into the real device SDK's private parts, checked on a real (unconnected) client."""

from __future__ import annotations

import base64
import collections
import os
import ssl

import paho.mqtt.client as mqtt
from azure.iot.device import IoTHubModuleClient

from device_agents import sdk


class _DroppedTls:
    """A TLS socket whose peer went away without closing the session."""

    def send(self, buf):
        raise ssl.SSLEOFError(8, "EOF occurred in violation of protocol")


def _client():
    key = base64.b64encode(os.urandom(32)).decode()
    return IoTHubModuleClient.create_from_connection_string(
        f"HostName=localhost;DeviceId=d;ModuleId=m;SharedAccessKey={key}")


def test_a_dropped_tls_connection_is_a_lost_connection_not_the_end_of_pahos_thread():
    client = _client()
    try:
        paho = sdk.transport(client)._mqtt_client
        paho._sock = _DroppedTls()
        packet = {"command": mqtt.PUBLISH, "mid": 1, "qos": 1, "pos": 0, "to_process": 1, "packet": b"x",
                  "info": None}
        paho._out_packet = collections.deque([dict(packet)])
        try:  # what paho 1.6 does without the agent's wrapper: the exception ends its network thread
            paho._packet_write()
            raise AssertionError("paho caught SSLEOFError itself: the wrapper is no longer needed")
        except ssl.SSLEOFError:
            pass
        assert sdk.survive_eof(client) is True
        paho._out_packet = collections.deque([dict(packet)])
        assert paho._packet_write() == mqtt.MQTT_ERR_CONN_LOST
        assert len(paho._out_packet) == 1  # the packet is kept, to go again after the reconnect
    finally:
        paho._sock = None
        paho._out_packet.clear()
        client.shutdown()


def test_the_sdk_parts_are_found():
    client = _client()
    try:
        assert sdk.transport(client) is not None
        assert sdk.watch_sessions(client, lambda present: None) is True
        message = sdk.input_message("devices/d/modules/m/inputs/input1/%24.mid=abc&%24.cid=c1&site=a", b"{}")
        assert (message.input_name, message.message_id, message.correlation_id) == ("input1", "abc", "c1")
        assert message.custom_properties == {"site": "a"}
    finally:
        client.shutdown()
