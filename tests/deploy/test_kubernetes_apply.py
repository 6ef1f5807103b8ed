"""Server-side apply through the kubernetes client, against a recording stand-in for the API server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgepack.deploy.kubernetes import KubernetesOptions, render_manifests
from edgepack.deploy.kubernetes_apply import apply_manifests, resource_path
from edgepack.errors import DeployError
from edgepack.packagers.function_index import index_function_app
from edgepack.packagers.functions import render_function_app
from edgepack.targets import parse_target

IMAGE = "registry.example/fn@sha256:" + "c" * 64


@pytest.fixture
def apiserver(tmp_path):
    """A loopback HTTP server answering like the API server does to server-side apply (the cluster cannot run
    here); ``missing`` lists plurals it answers 404 for, as a cluster without a CRD would."""
    seen: list[tuple[str, str, dict, dict]] = []
    missing: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.command, self.path, self.headers, body))  # header names case-insensitive
            status = 404 if self.path.split("?")[0].split("/")[-2] in missing else 200
            payload = json.dumps(body if status == 200 else {"kind": "Status", "code": 404}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "me", "user": {"token": "test-token"}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "me"}}]}))
    yield {"seen": seen, "missing": missing, "kubeconfig": kubeconfig}
    server.shutdown()
    server.server_close()


def _manifests():
    functions = index_function_app(render_function_app(parse_target(
        "functions-blob", input_path="input/{name}.json", output_path="output/{name}.json")))
    return render_manifests(functions, IMAGE, KubernetesOptions(name="fn", namespace="models",
                                                                settings={"AzureWebJobsStorage": "conn"}))


def test_every_object_is_applied_server_side(apiserver):
    applied = apply_manifests(_manifests(), kubeconfig=apiserver["kubeconfig"])
    assert applied == ["Secret/fn", "Deployment/fn", "ScaledObject/fn"]
    paths = [p.split("?")[0] for _, p, _, _ in apiserver["seen"]]
    assert paths == ["/api/v1/namespaces/models/secrets/fn", "/apis/apps/v1/namespaces/models/deployments/fn",
                     "/apis/keda.sh/v1alpha1/namespaces/models/scaledobjects/fn"]
    for method, path, headers, _ in apiserver["seen"]:
        assert method == "PATCH" and "fieldManager=edgepack" in path and "force=true" in path
        assert headers["Content-Type"] == "application/apply-patch+yaml"
        assert headers["Authorization"] == "Bearer test-token"
    assert apiserver["seen"][2][3]["spec"]["triggers"][0]["type"] == "azure-blob"


def test_a_cluster_without_keda_is_named(apiserver):
    apiserver["missing"].add("scaledobjects")
    with pytest.raises(DeployError, match="applying ScaledObject/fn: 404") as info:
        apply_manifests(_manifests(), kubeconfig=apiserver["kubeconfig"])
    assert "Install KEDA" in info.value.hint


def test_paths_and_a_bad_kubeconfig(tmp_path):
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"}}
    assert resource_path(hpa) == "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/h"
    bad = tmp_path / "kubeconfig"
    bad.write_text("not: [a, kubeconfig")
    with pytest.raises(DeployError, match="loading kubeconfig") as info:
        apply_manifests([], kubeconfig=bad)
    assert "--kubeconfig" in info.value.hint
