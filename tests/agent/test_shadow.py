"""Shadow scoring with the real device SDK against the local hub: a candidate scores every input beside the
served model, whose answers alone are sent, and the agent reports their agreement and the candidate's latency."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.agent.test_hot_swap import _offer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def _shadow(responder) -> dict:
    return responder.reported.get("edgepack", {}).get("shadow") or {}


def _send(hub, count: int, start: int) -> set[str]:
    return {hub.responder.send_input("input1", json.dumps({"data": [[i / 10, 0.5, -0.25, 1.0]]}))
            for i in range(start, start + count)}


def _answers(hub, ids: set[str]) -> list:
    assert hub.responder.wait_for(lambda r: ids <= {m.correlation_id for m in r.messages}, 60)
    return [m for m in hub.responder.messages if m.correlation_id in ids]


def test_a_candidate_is_compared_on_live_inputs_and_never_serves(hub, start_agent, sampled_config, models,
                                                                 tmp_path):
    start_agent(sampled_config)
    baked = (tmp_path / "model" / "model.onnx").read_bytes()  # the image's model, offered as a candidate
    models.files["same/model.onnx"] = baked
    same = {"digest": "sha256:" + hashlib.sha256(baked).hexdigest(), "uri": models.url("same/model.onnx"),
            "sizeBytes": len(baked)}
    hub.responder.patch_desired({"shadow": {"version": 2, **same}})
    assert hub.responder.wait_for(lambda r: _shadow(r).get("digest") == same["digest"]
                                  and _shadow(r).get("status") == "serving", 60), _shadow(hub.responder)
    served = _answers(hub, _send(hub, 40, 0))
    assert {m.properties["modelVersion"] for m in served} == {"1"}
    assert hub.responder.wait_for(lambda r: (_shadow(r).get("compared") or 0) >= 40, 30), _shadow(hub.responder)
    report = _shadow(hub.responder)
    assert report["agreement"] == 1.0 and report["errors"] == 0 and report["p99Ms"] > 0

    other, _ = _offer(models, tmp_path, "v3", seed=33)  # other weights: other answers
    hub.responder.patch_desired({"shadow": {"version": 3, **other}})
    assert hub.responder.wait_for(lambda r: _shadow(r).get("digest") == other["digest"]
                                  and _shadow(r).get("compared") == 0, 60), _shadow(hub.responder)
    before = {m.correlation_id: m.json() for m in served}
    again = _answers(hub, _send(hub, 40, 0))  # the same inputs: still the served model's answers
    assert {m.properties["modelVersion"] for m in again} == {"1"}
    assert sorted(json.dumps(m.json()) for m in again) == sorted(json.dumps(v) for v in before.values())
    assert hub.responder.wait_for(lambda r: (_shadow(r).get("compared") or 0) >= 40, 30)
    assert _shadow(hub.responder)["agreement"] == 0.0
    assert hub.responder.reported["edgepack"]["model"]["version"] == 1  # it never served

    hub.responder.patch_desired({"shadow": None})
    assert hub.responder.wait_for(lambda r: "shadow" not in r.reported.get("edgepack", {}), 30)
