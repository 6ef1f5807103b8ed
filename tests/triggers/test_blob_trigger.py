"""The local blob trigger against the real Azurite emulator: scoring, receipts, updates, retries and poison."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from edgepack.targets import parse_target
from tests.project import expected, make_function_app
from triggers.blob import BlobPattern, BlobTrigger, fill_path
from triggers.host import load_app

pytestmark = pytest.mark.integration
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection(env: dict[str, str]) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={env['EDGEPACK_DEV_AZURITE_BLOB']};QueueEndpoint={env['EDGEPACK_DEV_AZURITE_QUEUE']};")


def test_patterns_capture_and_fill():
    pattern = BlobPattern.parse("input/{blobname}.json")
    assert (pattern.container, pattern.prefix) == ("input", "")
    assert pattern.regex.match("a/b.json").groupdict() == {"blobname": "a/b"}
    assert not pattern.regex.match("a.txt")
    literal = BlobPattern.parse("samples/original-{name}.png")
    assert literal.prefix == "original-" and literal.regex.match("original-x.png")
    assert fill_path("output/{blobname}_out.json", {"blobname": "a/b"}) == "output/a/b_out.json"


@pytest.fixture
def app(tmp_path, monkeypatch, dev_env):
    run = uuid.uuid4().hex[:8]
    target = parse_target("functions-blob", input_path=f"in-{run}/{{blobname}}.json",
                          output_path=f"out-{run}/{{blobname}}_out.json")
    root = tmp_path / "wwwroot"
    monkeypatch.setenv("EDGEPACK_RUNTIME_CONFIG", str(make_function_app(tmp_path, root, target, seed=31)))
    conn = azurite_connection(dev_env)
    return {"run": run, "fn": load_app(str(root))[0], "env": {"AzureWebJobsStorage": conn},
            "service": BlobServiceClient.from_connection_string(conn), "model": tmp_path / "model" / "model.onnx",
            "conn": conn}


def _trigger(app, **kwargs) -> BlobTrigger:
    trigger = BlobTrigger(app["fn"], env=app["env"], app_name=f"app-{app['run']}", retry_delay=0, **kwargs)
    for container in (trigger.pattern.container, "azure-webjobs-hosts", f"out-{app['run']}"):
        try:
            app["service"].create_container(container)
        except Exception:  # noqa: BLE001 - already there
            pass
    return trigger


def test_blobs_are_scored_once_updates_again_failures_poisoned(app):
    run, service = app["run"], app["service"]
    inputs = service.get_container_client(f"in-{run}")
    trigger = _trigger(app)
    rows = {f"b{i}": [[float(i), 1.0, 2.0, 3.0]] for i in range(12)}
    for name, data in rows.items():
        inputs.upload_blob(f"{name}.json", json.dumps({"data": data}))
    inputs.upload_blob("nested/deep.json", json.dumps({"data": [[0.0, 0.0, 0.0, 1.0]]}))
    inputs.upload_blob("ignored.txt", b"not matched")
    assert trigger.scan_once() == 13
    outputs = service.get_container_client(f"out-{run}")
    for name, data in rows.items():
        body = json.loads(outputs.download_blob(f"{name}_out.json").readall())
        assert body["result"][0] == pytest.approx(expected(app["model"], data)[0], rel=1e-6)
    assert outputs.get_blob_client("nested/deep_out.json").exists()
    # A second host (a restart) processes nothing: the receipts are in storage.
    assert _trigger(app).scan_once() == 0
    # An updated blob has a new ETag and is scored again.
    inputs.upload_blob("b1.json", json.dumps({"data": [[9.0, 9.0, 9.0, 9.0]]}), overwrite=True)
    assert trigger.scan_once() == 1
    body = json.loads(outputs.download_blob("b1_out.json").readall())
    assert body["result"][0] == pytest.approx(expected(app["model"], [[9.0, 9.0, 9.0, 9.0]])[0], rel=1e-6)
    # A blob the model cannot score is tried max_tries times, then recorded in the poison queue.
    inputs.upload_blob("bad.json", b'{"data": "not a matrix"}')
    calls = {"n": 0}
    original = trigger.fn.call

    def counting(**kwargs):
        calls["n"] += 1
        return original(**kwargs)

    object.__setattr__(trigger, "fn", type(trigger.fn)(trigger.fn.name, trigger.fn.bindings, counting))
    assert trigger.scan_once() == 1
    assert calls["n"] == 5
    assert not outputs.get_blob_client("bad_out.json").exists()
    poison = QueueClient.from_connection_string(app["conn"], "webjobs-blobtrigger-poison")
    records = [json.loads(m.content) for m in poison.receive_messages(max_messages=32)]
    mine = [r for r in records if r["ContainerName"] == f"in-{run}"]
    assert mine == [{"FunctionId": f"app-{run}.Functions.score", "BlobType": "BlockBlob",
                     "ContainerName": f"in-{run}", "BlobName": "bad.json", "ETag": mine[0]["ETag"]}]
    assert trigger.scan_once() == 0


def test_an_incomplete_receipt_left_by_a_dead_host_is_taken_over(app):
    run, service = app["run"], app["service"]
    first = _trigger(app)
    service.get_container_client(f"in-{run}").upload_blob("x.json", json.dumps({"data": [[1.0, 2.0, 3.0, 4.0]]}))
    props = service.get_blob_client(f"in-{run}", "x.json").get_blob_properties()
    assert first._claim("x.json", props.etag)  # the first host claims it, then "dies" before scoring
    assert _trigger(app).scan_once() == 1
    assert service.get_blob_client(f"out-{run}", "x_out.json").exists()
