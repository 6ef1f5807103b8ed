"""Model hot swap from the twin: the real device SDK against the local hub, models from a loopback HTTP server
(byte ranges, cut connections) and from the real OCI registry."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time

import pytest

from edgepack.devtools.projects import expected, make_model
from edgepack.runtime.scoring import load_runtime

from device_agents.models import ModelStore, ModelSwapper

from tests.agent.modelserver import ModelServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def _offer(server: ModelServer, tmp_path, name: str, *, seed: int, **kw) -> tuple[dict, bytes]:
    path = make_model(tmp_path / "offered" / name / "model.onnx", seed=seed, **kw)
    body = path.read_bytes()
    server.files[f"{name}/model.onnx"] = body
    return {"digest": "sha256:" + hashlib.sha256(body).hexdigest(), "uri": server.url(f"{name}/model.onnx"),
            "sizeBytes": len(body)}, body


def _model(responder) -> dict:
    return responder.reported.get("edgepack", {}).get("model", {})


def _serving(version: int):
    return lambda r: _model(r).get("version") == version and _model(r).get("status") == "serving"


def _failed_with(text: str):
    return lambda r: _model(r).get("status") == "failed" and text in _model(r).get("lastError", "")


def _score(responder, rows) -> list:
    status, answer = responder.invoke("score", {"data": rows})
    assert status == 200, answer
    return answer["result"]


def test_a_model_from_https_is_swapped_in_and_scores(hub, start_agent, sampled_config, models, tmp_path):
    start_agent(sampled_config)
    spec, _ = _offer(models, tmp_path, "v2", seed=22)
    hub.responder.patch_desired({"model": {"version": 2, **spec}})
    assert hub.responder.wait_for(_serving(2), 30), _model(hub.responder)
    report = _model(hub.responder)
    assert report["digest"] == spec["digest"] and report["previousVersion"] == 1
    assert report["swapSeconds"] > 0 and report["bytesFetched"] == spec["sizeBytes"]
    rows = [[0.1, 0.2, 0.3, 0.4]]
    assert _score(hub.responder, rows)[0] == pytest.approx(
        expected(tmp_path / "offered" / "v2" / "model.onnx", rows)[0], rel=1e-5)
    mid = hub.responder.send_input("input1", json.dumps({"data": rows}))
    assert hub.responder.wait_for(lambda r: any(m.correlation_id == mid for m in r.messages), 20)
    result = next(m for m in hub.responder.messages if m.correlation_id == mid)
    assert result.properties["modelVersion"] == "2"



def test_a_model_no_longer_named_by_the_twin_gives_way_to_the_images_own(hub, start_agent, sampled_config, models,
                                                                         tmp_path):
    """A rollout's deployment deleted takes its desired model away: the agent serves the image's model again."""
    agent = start_agent(sampled_config)
    spec, _ = _offer(models, tmp_path, "v2", seed=22)
    hub.responder.patch_desired({"model": {"version": 2, **spec}})
    assert hub.responder.wait_for(_serving(2), 30), _model(hub.responder)
    hub.responder.patch_desired({"model": None})
    back = hub.responder.wait_for(lambda r: _serving(1)(r) and _model(r).get("digest") is None, 30)
    assert back, _model(hub.responder)
    assert _model(hub.responder)["previousVersion"] == 2
    rows = [[0.1, 0.2, 0.3, 0.4]]
    assert _score(hub.responder, rows)[0] == pytest.approx(
        expected(tmp_path / "model" / "model.onnx", rows)[0], rel=1e-5)
    agent.stop()  # started again (offline, before any twin read), it serves the image's model, not version 2
    base = load_runtime(str(sampled_config), start=False)
    swapper = ModelSwapper(base, ModelStore(str(tmp_path / "state" / "models")), install=lambda r: None,
                           changed=lambda: None, fetcher=lambda stop: None)
    restored = swapper.restore(base)
    assert swapper.current.digest == "" and swapper.previous is not None and swapper.previous.version == 2
    assert restored.config.model_dir == str(tmp_path / "model")

@pytest.mark.parametrize("fault, text", [
    ("digest", "its sha256 is"),
    ("garbage", "does not load"),
    ("probe", "failed its probe"),
])
def test_a_bad_model_is_refused_and_the_old_one_keeps_serving(hub, start_agent, sampled_config, models, tmp_path,
                                                               fault, text):
    start_agent(sampled_config)
    rows = [[0.3, 0.1, -0.2, 0.9]]
    before = _score(hub.responder, rows)
    if fault == "probe":
        spec, _ = _offer(models, tmp_path, "wide", seed=5, features=5)  # loads, but not for 4 features
    else:
        spec, body = _offer(models, tmp_path, "bad", seed=5)
        if fault == "digest":
            spec["digest"] = "sha256:" + "0" * 64
        else:
            models.files["bad/model.onnx"] = b"not an onnx model" * 10
            spec.update(digest="sha256:" + hashlib.sha256(models.files["bad/model.onnx"]).hexdigest(),
                        sizeBytes=170)
    hub.responder.patch_desired({"model": {"version": 7, **spec}})
    assert hub.responder.wait_for(_failed_with(text), 30), _model(hub.responder)
    assert _model(hub.responder)["version"] == 1
    assert _score(hub.responder, rows) == before
    # the same model asked again is not fetched again: it was refused
    served = models.bytes_sent
    hub.responder.patch_desired({"model": {"version": 7, **spec}, "note": "again"})
    assert hub.responder.wait_for(_failed_with("was refused"), 20), _model(hub.responder)
    assert models.bytes_sent == served


def test_an_interrupted_download_resumes_where_it_stopped(hub, start_agent, sampled_config, models, tmp_path):
    start_agent(sampled_config)
    spec, body = _offer(models, tmp_path, "big", seed=9, padding=4 << 20)
    models.cut_after = len(body) * 2 // 5  # the first response ends after 40% of the bytes
    hub.responder.patch_desired({"model": {"version": 3, **spec}})
    assert hub.responder.wait_for(_serving(3), 60), _model(hub.responder)
    assert models.requests[0] is None and models.requests[1] == f"bytes={len(body) * 2 // 5}-"
    assert models.bytes_sent <= 1.1 * len(body), f"{models.bytes_sent} bytes sent for a {len(body)}-byte model"
    assert _model(hub.responder)["bytesFetched"] == len(body)


def test_swap_under_load_drops_nothing_and_rollback_restores_the_old_model(hub, start_agent, sampled_config, models,
                                                                          tmp_path):
    start_agent(sampled_config)
    spec, _ = _offer(models, tmp_path, "v2", seed=22, padding=8 << 20)
    rng = random.Random(4)
    sent: dict[str, list] = {}
    stop = threading.Event()

    def load():  # ≥ 200 messages/s until stopped
        while not stop.is_set():
            started = time.monotonic()
            for _ in range(20):
                rows = [[rng.uniform(-1, 1) for _ in range(4)]]
                sent[hub.responder.send_input("input1", json.dumps({"data": rows}))] = rows
            time.sleep(max(0.0, 0.08 - (time.monotonic() - started)))

    sender = threading.Thread(target=load)
    sender.start()
    time.sleep(1.0)
    hub.responder.patch_desired({"model": {"version": 2, **spec}})
    try:
        assert hub.responder.wait_for(_serving(2), 60), _model(hub.responder)
        time.sleep(1.0)
    finally:
        stop.set()
        sender.join()
    assert hub.responder.wait_for(lambda r: set(sent) <= {m.correlation_id for m in r.messages}, 60), \
        f"{len(set(sent) - {m.correlation_id for m in hub.responder.messages})} of {len(sent)} results missing"
    by_model = {"1": tmp_path / "model" / "model.onnx", "2": tmp_path / "offered" / "v2" / "model.onnx"}
    versions = {"1": 0, "2": 0}
    for message in hub.responder.messages:
        assert message.properties["status"] == "200", message.body
        version = message.properties["modelVersion"]
        versions[version] += 1
        rows = sent[message.correlation_id]
        assert message.json()["result"][0] == pytest.approx(expected(by_model[version], rows)[0], rel=1e-5)
    assert versions["1"] > 0 and versions["2"] > 0, versions
    assert len(sent) >= 200 * 2
    assert _model(hub.responder)["swapSeconds"] > 0

    status, answer = hub.responder.invoke("rollback")
    assert status == 200 and answer["model"]["version"] == 1
    assert hub.responder.wait_for(_serving(1), 10)
    rows = [[0.2, 0.2, 0.2, 0.2]]
    assert _score(hub.responder, rows)[0] == pytest.approx(expected(by_model["1"], rows)[0], rel=1e-5)
    assert hub.responder.invoke("rollback")[0] == 409  # nothing before version 1


def test_the_swapped_model_serves_after_a_restart(hub, start_agent, sampled_config, models, tmp_path):
    agent = start_agent(sampled_config)
    spec, _ = _offer(models, tmp_path, "v2", seed=22)
    hub.responder.patch_desired({"model": {"version": 2, **spec}})
    assert hub.responder.wait_for(_serving(2), 30), _model(hub.responder)
    agent.stop()
    models.files.clear()  # nothing to download: it must come from the disk
    hub.responder.reported.clear()
    start_agent(sampled_config)
    assert _model(hub.responder)["version"] == 2 and _model(hub.responder)["previousVersion"] == 1
    rows = [[0.1, 0.2, 0.3, 0.4]]
    assert _score(hub.responder, rows)[0] == pytest.approx(
        expected(tmp_path / "offered" / "v2" / "model.onnx", rows)[0], rel=1e-5)


def test_a_desired_patch_sent_while_offline_is_applied_after_reconnecting(hub, start_agent, sampled_config, models,
                                                                          tmp_path):
    start_agent(sampled_config)
    spec, _ = _offer(models, tmp_path, "v2", seed=22)
    hub.link.cut()
    time.sleep(1.0)
    hub.responder.patch_desired({"model": {"version": 2, **spec}})  # the agent is not there to get it
    time.sleep(2.0)
    assert _model(hub.responder)["version"] == 1
    hub.link.restore()
    assert hub.responder.wait_for(_serving(2), 60), _model(hub.responder)


def test_a_model_pushed_to_the_registry_is_fetched_by_digest(hub, start_agent, sampled_config, dev_registry,
                                                             edgepack_home, tmp_path, capsys):
    from tests.project import run_cli

    for seed in (11, 22):
        path = make_model(tmp_path / f"reg{seed}" / "model.onnx", seed=seed)
        assert run_cli(["model", "register", "linear", str(path)], capsys)[0] == 0
    repo = f"{dev_registry}/models/linear-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:10]}"
    code, out, err = run_cli(["model", "push", "linear:2", "--to", repo, "--json"], capsys)
    assert code == 0, err
    ref = json.loads(out)["ref"]
    start_agent(sampled_config)
    digest = ref.split("@", 1)[1]
    hub.responder.patch_desired({"model": {"version": 1, "digest": digest, "uri": ref}})
    assert hub.responder.wait_for(_failed_with("holds version 2, not 1"), 30), _model(hub.responder)
    fetched = _model(hub.responder)["bytesFetched"]
    hub.responder.patch_desired({"model": {"version": 2, "digest": digest, "uri": ref}})  # the version corrected
    assert hub.responder.wait_for(_serving(2), 30), _model(hub.responder)
    assert _model(hub.responder)["bytesFetched"] - fetched < 4096  # the manifest again, not the files
    path = tmp_path / "reg22" / "model.onnx"
    rows = [[0.1, 0.2, 0.3, 0.4]]
    assert _score(hub.responder, rows)[0] == pytest.approx(expected(path, rows)[0], rel=1e-5)
