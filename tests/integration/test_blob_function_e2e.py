"""A blob-triggered function image on the real engine against Azurite: 50 blobs in, 50 results out, a restart
reprocesses nothing, a bad blob is poisoned, a re-uploaded blob is scored again."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from tests.project import expected, make_model, make_project, run_cli
from tests.triggers.test_blob_trigger import azurite_connection

pytestmark = pytest.mark.integration


def _wait(predicate, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError("condition not met in time")


def _count(container) -> int:
    try:
        return len(list(container.list_blobs()))
    except ResourceNotFoundError:  # the host creates the output container with its first output
        return 0


def test_blob_function_in_a_container(tmp_path, edgepack_home, capsys, dev_env, functions_base_image_ref):
    run = uuid.uuid4().hex[:8]
    config = make_project(tmp_path / "proj")
    model = make_model(tmp_path / "model.onnx", seed=41)
    assert run_cli(["model", "register", "m", str(model)], capsys)[0] == 0
    layout = tmp_path / "layout"
    code, out, err = run_cli(["package", "--model", "m", "--inference-config", str(config), "--target",
                              "functions-blob", "--input-path", f"in-{run}/{{blobname}}.json", "--output-path",
                              f"out-{run}/{{blobname}}_out.json", "--base-image", functions_base_image_ref,
                              "--output", str(layout)], capsys)
    assert code == 0, err
    conn = azurite_connection(dev_env)
    service = BlobServiceClient.from_connection_string(conn)
    inputs = service.create_container(f"in-{run}")
    outputs = service.get_container_client(f"out-{run}")
    rows = {f"b{i:02d}": [[float(i), 0.5, -1.0, 2.0]] for i in range(50)}
    for name, data in rows.items():  # uploaded before the host starts: existing blobs are processed too
        inputs.upload_blob(f"{name}.json", json.dumps({"data": data}))
    run_args = ["run", str(layout), "--host-network", "--env", f"AzureWebJobsStorage={conn}", "--name",
                f"blob-{run}", "--json"]
    names = []
    try:
        code, out, err = run_cli(run_args, capsys)
        assert code == 0, err
        names.append(f"blob-{run}")
        _wait(lambda: _count(outputs) == 50)
        for name, data in rows.items():
            body = json.loads(outputs.download_blob(f"{name}_out.json").readall())
            np.testing.assert_allclose(body["result"], expected(model, data), rtol=1e-5)
        stamps = {b.name: b.etag for b in outputs.list_blobs()}
        # Restart: a new container on the same storage reprocesses none of the 50.
        assert run_cli(["stop", f"blob-{run}"], capsys)[0] == 0
        names.remove(f"blob-{run}")
        code, out, err = run_cli(run_args, capsys)
        assert code == 0, err
        names.append(f"blob-{run}")
        inputs.upload_blob("bad.json", b'{"data": "cannot score this"}')
        poison = QueueClient.from_connection_string(conn, "webjobs-blobtrigger-poison")

        def poisoned() -> list[dict]:
            try:
                msgs = [json.loads(m.content) for m in poison.peek_messages(max_messages=32)]
            except ResourceNotFoundError:  # the host creates the queue with its first poison record
                return []
            return [m for m in msgs if m["ContainerName"] == f"in-{run}"]

        _wait(lambda: poisoned() != [])
        assert poisoned()[0]["BlobName"] == "bad.json"
        assert {b.name: b.etag for b in outputs.list_blobs()} == stamps
        code, logs, _ = run_cli(["logs", f"blob-{run}"], capsys)
        assert logs.count("failed on") == 5 and "poisoned after 5 tries" in logs
        # Re-uploading a blob (new ETag) scores it again.
        inputs.upload_blob("b07.json", json.dumps({"data": [[7.0, 7.0, 7.0, 7.0]]}), overwrite=True)
        _wait(lambda: [b.etag for b in outputs.list_blobs(name_starts_with="b07_out")] != [stamps["b07_out.json"]])
        body = json.loads(outputs.download_blob("b07_out.json").readall())
        np.testing.assert_allclose(body["result"], expected(model, [[7.0, 7.0, 7.0, 7.0]]), rtol=1e-5)
    finally:
        for name in names:
            run_cli(["stop", name], capsys)
