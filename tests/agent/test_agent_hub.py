"""The agent in this process, with the real device SDK, against the local hub's broker and responder."""

from __future__ import annotations

import json
import random
import time

import pytest

from edgepack.devtools.projects import expected

from device_agents.scoring import result_id

pytestmark = [
    pytest.mark.integration,
    # paho-mqtt 1.6 leaves its socket pair and a dropped TLS socket to the garbage collector after a lost link
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture
def agent(start_agent, runtime_config):
    return start_agent(runtime_config)


def _rows(seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.uniform(-1, 1) for _ in range(4)]]


def test_inputs_are_scored_and_results_sent_with_ids_derived_from_the_inputs(hub, agent, tmp_path):
    sent = {}
    for i in range(50):
        rows = _rows(i)
        mid = hub.responder.send_input("input1", json.dumps({"data": rows}), properties={"site": "a"})
        sent[mid] = rows
    assert hub.responder.wait_for(lambda r: len(r.messages) >= 50, 30), f"{len(hub.responder.messages)} of 50 arrived"
    by_cid = {m.correlation_id: m for m in hub.responder.messages}
    assert set(by_cid) == set(sent)
    model = tmp_path / "model" / "model.onnx"
    for mid, rows in sent.items():
        message = by_cid[mid]
        assert message.output == "output1" and message.module == "edgepack-agent"
        assert message.message_id == result_id(mid)
        assert message.properties["status"] == "200" and message.properties["modelVersion"] == "1"
        assert message.json()["result"][0] == pytest.approx(expected(model, rows)[0], rel=1e-5)
    assert hub.responder.wait_for(lambda r: r.reported["edgepack"]["messagesOut"] >= 50, 10)
    report = hub.responder.reported["edgepack"]
    assert report["messagesIn"] == 50 and report["errors"] == 0 and report["outboxDepth"] == 0
    assert report["ackAfterStore"] is True and report["p99Ms"] is not None


def test_bad_input_and_wrong_input_name_give_error_results_not_silence(hub, agent):
    bad = hub.responder.send_input("input1", "not json")
    other = hub.responder.send_input("elsewhere", json.dumps({"data": _rows(1)}))
    assert hub.responder.wait_for(lambda r: len(r.messages) >= 2, 20)
    by_cid = {m.correlation_id: m for m in hub.responder.messages}
    assert by_cid[bad].properties["status"] == "400" and "JSON" in by_cid[bad].json()["error"]
    assert by_cid[other].properties["status"] == "404" and by_cid[other].properties["error"] == "true"
    assert hub.responder.wait_for(lambda r: r.reported["edgepack"]["errors"] == 2, 10)
    assert hub.responder.reported["edgepack"]["lastError"].startswith("404: this module scores messages sent to")


def test_direct_methods_and_desired_versions(hub, agent):
    assert hub.responder.invoke("ping")[0] == 200
    status, answer = hub.responder.invoke("score", {"data": _rows(3)})
    assert status == 200 and len(answer["result"][0]) == 3
    assert hub.responder.invoke("nope")[0] == 404
    version = hub.responder.patch_desired({"note": "x"})
    assert hub.responder.wait_for(lambda r: r.reported["edgepack"]["desiredVersion"] == version, 10)


CUT_SECONDS = 60


def test_a_thousand_messages_ride_out_a_link_cut_for_a_minute(hub, agent):
    ids = [hub.responder.send_input("input1", json.dumps({"data": _rows(i)})) for i in range(1000)]
    assert hub.responder.wait_for(lambda r: len(r.messages) >= 100, 30)
    hub.link.cut()  # mid-stream: results in the agent's outbox, inputs with the agent and the broker
    before = -1
    while before != len(hub.responder.messages):  # what had passed the link before the cut reaches the hub
        before = len(hub.responder.messages)
        time.sleep(2.0)
    assert before < 1000, "everything arrived before the link was cut"
    time.sleep(CUT_SECONDS)
    assert len(hub.responder.messages) == before  # nothing moves while the link is down
    hub.link.restore()
    assert hub.responder.wait_for(lambda r: len({m.correlation_id for m in r.messages}) >= 1000, 120), \
        f"{len({m.correlation_id for m in hub.responder.messages})} of 1000 arrived"
    got = [m.correlation_id for m in hub.responder.messages]
    assert set(got) == set(ids)
    duplicates = len(got) - len(set(got))
    # at most what was in flight when the link went, twice: paho's resend and the agent's
    assert duplicates <= 2 * agent.settings.send_window, f"{duplicates} duplicates"
    assert all(m.message_id == result_id(m.correlation_id) for m in hub.responder.messages)


def _scored(responder, input_ids) -> bool:
    return set(input_ids) <= {m.correlation_id for m in responder.messages}


def test_a_hub_that_forgot_the_session_gets_a_fresh_connection_with_its_subscriptions(hub, agent):
    before = [hub.responder.send_input("input1", json.dumps({"data": _rows(i)})) for i in range(5)]
    assert hub.responder.wait_for(lambda r: _scored(r, before), 20)
    hub.broker.restart(forget_sessions=True)  # the SDK reconnects but would never subscribe again
    assert hub.responder.wait_for(lambda r: r.connected, 20)
    assert hub.responder.wait_for(lambda r: r.reported["edgepack"].get("sessionsLost") == 1, 60), \
        "the agent did not notice the lost session"
    after = [hub.responder.send_input("input1", json.dumps({"data": _rows(i)})) for i in range(5, 10)]
    assert hub.responder.wait_for(lambda r: _scored(r, after), 30), "inputs after the session loss were not scored"
    version = hub.responder.patch_desired({"note": "after"})
    assert hub.responder.wait_for(lambda r: r.reported["edgepack"]["desiredVersion"] == version, 10)
    assert hub.responder.invoke("ping")[0] == 200


def test_a_link_cut_keeps_the_session(hub, agent):
    hub.link.cut()
    time.sleep(2)
    hub.link.restore()
    version = hub.responder.patch_desired({"note": "back"})
    assert hub.responder.wait_for(lambda r: r.reported["edgepack"]["desiredVersion"] == version, 40)
    assert hub.responder.reported["edgepack"]["sessionsLost"] == 0
