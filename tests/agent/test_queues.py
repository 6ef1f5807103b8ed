"""The agent's disk-backed inbox and outbox: order, bounds with counted drops, atomic hand-over, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from device_agents.queues import Envelope, Queues


def _msg(i: int, size: int = 10, channel: str = "input1") -> Envelope:
    return Envelope(channel=channel, message_id=f"m{i}", body=bytes([i % 256]) * size, correlation_id=f"c{i}",
                    content_type="application/json", properties={"n": str(i)})


def test_inputs_become_results_in_one_step_and_come_back_in_order(tmp_path):
    q = Queues(str(tmp_path / "q.db"))
    for i in range(5):
        q.take(_msg(i))
    taken = q.inputs(3)
    assert [m.message_id for m in taken] == ["m0", "m1", "m2"]
    assert taken[1].properties == {"n": "1"} and taken[1].correlation_id == "c1" and taken[1].body == b"\x01" * 10
    q.settle(taken, [_msg(i, channel="output1") for i in range(3)])
    assert [m.message_id for m in q.inputs(10)] == ["m3", "m4"]
    pending = q.pending(10)
    assert [m.message_id for m in pending] == ["m0", "m1", "m2"] and pending[0].channel == "output1"
    q.delivered(pending[:1])
    assert [m.message_id for m in q.pending(10)] == ["m1", "m2"]
    assert q.depth() == (2, 20)


def test_a_full_outbox_drops_the_oldest_and_counts_them_across_restarts(tmp_path):
    path = str(tmp_path / "q.db")
    q = Queues(path, max_results=3, max_result_bytes=1000)
    assert q.settle([], [_msg(i) for i in range(5)]) == 2
    assert [m.message_id for m in q.pending(10)] == ["m2", "m3", "m4"] and q.dropped == 2
    assert q.settle([], [_msg(9, size=995)]) == 3  # by bytes: everything older had to go
    q.close()
    again = Queues(path, max_results=3, max_result_bytes=1000)
    assert [m.message_id for m in again.pending(10)] == ["m9"] and again.dropped == 5


def test_the_inbox_says_when_it_is_full_and_drops_nothing(tmp_path):
    q = Queues(str(tmp_path / "q.db"), max_inputs=2)
    q.take(_msg(0))
    assert not q.inbox_full
    q.take(_msg(1))
    q.take(_msg(2))  # a message the broker already delivered is still kept
    assert q.inbox_full and q.input_depth == 3
    q.settle(q.inputs(2), [])
    assert not q.inbox_full and [m.message_id for m in q.inputs(5)] == ["m2"]


def test_a_failed_hand_over_changes_nothing(tmp_path):
    q = Queues(str(tmp_path / "q.db"))
    q.take(_msg(0))

    class Broken(Envelope):
        def _meta(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        q.settle(q.inputs(1), [_msg(1), Broken(channel="o", message_id="x", body=b"")])
    assert [m.message_id for m in q.inputs(5)] == ["m0"] and q.pending(5) == []


def test_what_was_stored_survives_kill_9(tmp_path):
    path = tmp_path / "q.db"
    writer = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from device_agents.queues import Envelope, Queues
        q = Queues({str(path)!r})
        i = 0
        while True:
            q.take(Envelope(channel="input1", message_id=f"m{{i}}", body=b"x"))
            q.settle(q.inputs(1), [Envelope(channel="output1", message_id=f"r{{i}}", body=b"y" * 100)])
            i += 1
            if i == 200:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    q = Queues(str(path))
    results = q.pending(1_000_000)
    numbers = [int(m.message_id[1:]) for m in results]
    assert len(numbers) >= 200 and numbers == list(range(len(numbers)))  # in order, no gap
    assert q.input_depth <= 1  # at most the one input taken but not yet scored when it died
    q.close()
