"""The local Service Bus broker, driven by the real azure-servicebus client over AMQP on loopback."""

from __future__ import annotations

import time

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode


@pytest.fixture
def broker(start_broker):
    return start_broker(["work:3:1", "other"])


def test_send_batch_receive_complete_abandon_and_dead_letter(broker):
    with ServiceBusClient.from_connection_string(broker.connection_string()) as client:
        with client.get_queue_sender("work") as sender:
            sender.send_messages(ServiceBusMessage('{"a": 1}', application_properties={"k": "v"},
                                                   content_type="application/json"))
            sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(3)])
        with client.get_queue_receiver("work") as receiver:
            got = receiver.receive_messages(max_message_count=10, max_wait_time=3)
            assert [str(m) for m in got] == ['{"a": 1}', "m0", "m1", "m2"]
            assert [m.sequence_number for m in got] == [1, 2, 3, 4]
            assert {m.delivery_count for m in got} == {0}
            assert got[0].application_properties == {b"k": b"v"} and got[0].content_type == "application/json"
            assert len({m.lock_token for m in got}) == 4
            for m in got[:3]:
                receiver.complete_message(m)
            receiver.abandon_message(got[3])
            again = receiver.receive_messages(max_message_count=1, max_wait_time=3)
            assert [(str(m), m.delivery_count) for m in again] == [("m2", 1)]
            receiver.dead_letter_message(again[0], reason="bad input", error_description="cannot parse")
        with client.get_queue_receiver("work", sub_queue="deadletter") as dlq:
            dead = dlq.receive_messages(max_message_count=5, max_wait_time=3)
            assert [(str(m), m.dead_letter_reason, m.dead_letter_error_description) for m in dead] == [
                ("m2", "bad input", "cannot parse")]
            dlq.complete_message(dead[0])


def test_lock_expiry_redelivers_and_max_delivery_count_dead_letters(broker):
    with ServiceBusClient.from_connection_string(broker.connection_string()) as client:
        with client.get_queue_sender("work") as sender:
            sender.send_messages(ServiceBusMessage("poison"))
        counts = []
        with client.get_queue_receiver("work") as receiver:
            for _ in range(3):
                got = receiver.receive_messages(max_message_count=1, max_wait_time=4)
                counts.append(got[0].delivery_count)
                time.sleep(1.3)  # let the 1 s lock expire instead of settling
            assert receiver.receive_messages(max_message_count=1, max_wait_time=2) == []
        assert counts == [0, 1, 2]
        with client.get_queue_receiver("work", sub_queue="deadletter") as dlq:
            dead = dlq.receive_messages(max_message_count=1, max_wait_time=3)
            assert dead[0].dead_letter_reason == "MaxDeliveryCountExceeded"
            assert dead[0].delivery_count == 3


def test_receive_and_delete_and_peek(broker):
    with ServiceBusClient.from_connection_string(broker.connection_string()) as client:
        with client.get_queue_sender("other") as sender:
            sender.send_messages([ServiceBusMessage("x"), ServiceBusMessage("y")])
        with client.get_queue_receiver("other") as receiver:
            assert [str(m) for m in receiver.peek_messages(max_message_count=5)] == ["x", "y"]
        with client.get_queue_receiver("other", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
            assert [str(m) for m in receiver.receive_messages(max_message_count=5, max_wait_time=3)] == ["x", "y"]
            assert receiver.receive_messages(max_message_count=5, max_wait_time=1) == []
