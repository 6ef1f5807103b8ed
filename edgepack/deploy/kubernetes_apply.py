"""Applying manifests to a cluster with server-side apply, through the kubernetes client and a kubeconfig.

Side effects: HTTPS to the cluster's API server. Server-side apply (``PATCH`` with
``application/apply-patch+yaml``, field manager ``edgepack``) creates or updates each object in one idempotent
request, as ``kubectl apply --server-side`` does, so running a deploy twice changes nothing the second time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepack.errors import DeployError

# apiVersion/kind -> URL plural, for the kinds edgepack writes.
_PLURALS = {("v1", "Secret"): "secrets", ("v1", "Service"): "services", ("apps/v1", "Deployment"): "deployments",
            ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
            ("keda.sh/v1alpha1", "ScaledObject"): "scaledobjects"}


def resource_path(manifest: dict[str, Any]) -> str:
    """The API path of a namespaced object (``/api/v1/...`` for the core group, ``/apis/...`` otherwise)."""
    version, kind = manifest["apiVersion"], manifest["kind"]
    meta = manifest["metadata"]
    prefix = "/api/v1" if version == "v1" else f"/apis/{version}"
    return f"{prefix}/namespaces/{meta.get('namespace', 'default')}/{_PLURALS[(version, kind)]}/{meta['name']}"


def apply_manifests(manifests: list[dict[str, Any]], *, kubeconfig: Path, context: str | None = None) -> list[str]:
    """Server-side apply every manifest, in order; returns ``kind/name`` of each.

    Raises:
        DeployError: the kubeconfig cannot be loaded, the cluster refused an object (a missing KEDA CRD is named),
            or it cannot be reached.
    """
    from kubernetes import config
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        api = config.new_client_from_config(config_file=str(kubeconfig), context=context)
    except Exception as exc:  # noqa: BLE001 - the loader raises ConfigException, OSError, yaml errors...
        raise DeployError(f"loading kubeconfig '{kubeconfig}': {exc}",
                          hint="Pass a kubeconfig that 'kubectl' can use, with --kubeconfig.") from exc
    done = []
    with api:
        for manifest in manifests:
            what = f"{manifest['kind']}/{manifest['metadata']['name']}"
            try:
                request = api.param_serialize(
                    "PATCH", resource_path(manifest), body=manifest, auth_settings=["BearerToken"],
                    query_params=[("fieldManager", "edgepack"), ("force", "true")],
                    header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"})
                response = api.call_api(*request[:4])
                response.read()
            except ApiException as exc:
                response = exc
            except HTTPError as exc:
                raise DeployError(f"applying {what}: cannot reach the cluster: {exc}",
                                  hint="Check the kubeconfig's server address and your network.") from exc
            if response.status >= 400:
                hint = ("Install KEDA in the cluster (its ScaledObject CRD is missing)."
                        if response.status == 404 and manifest["kind"] == "ScaledObject"
                        else "Check your permissions in the namespace ('kubectl auth can-i').")
                raise DeployError(f"applying {what}: {response.status} {response.reason}", hint=hint,
                                  command="server-side apply", returncode=response.status)
            done.append(what)
    return done
