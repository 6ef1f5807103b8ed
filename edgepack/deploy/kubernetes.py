"""Kubernetes manifests for function images, from their indexed function metadata, and for scoring images
(webservice, fpga) from their labels: pure, then validated.

Core tools' ``func kubernetes deploy`` reads ``function.json`` files, which v2 Python apps do not have, so it
emits only a Secret for them; edgepack works from the ``io.edgepack.functions`` label written at packaging.
HTTP functions get a Deployment, a Service and a HorizontalPodAutoscaler; blob and Service Bus functions get
a Deployment scaled by a KEDA ScaledObject (``keda.sh/v1alpha1``) with ``azure-blob``/``azure-servicebus``
triggers reading the connection from the environment. Every manifest is validated before anything is applied:
core kinds against the Kubernetes schemas (kubernetes-validate), the ScaledObject against the schema below.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from edgepack.deploy.pinning import pinned
from edgepack.errors import DeployError

HTTP_PORT = 80  # the Functions host's port in its container
SERVICE_PORT = 80  # every Service's own port
_SETTING = re.compile(r"^%([A-Za-z_][A-Za-z0-9_]*)%$")
_KEDA_TYPES = {"blobTrigger": "azure-blob", "serviceBusTrigger": "azure-servicebus"}
_DEFAULT_CONNECTIONS = {"blobTrigger": "AzureWebJobsStorage", "serviceBusTrigger": "AzureWebJobsServiceBus"}
# The fields of KEDA's ScaledObject CRD (keda.sh/v1alpha1) that edgepack writes; unknown fields are refused.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "namespace": {"type": "string"}, "labels": {"type": "object"}}},
        "spec": {"type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
                 "properties": {
                     "scaleTargetRef": {"type": "object", "required": ["name"], "properties": {
                         "name": {"type": "string"}, "kind": {"type": "string"}, "apiVersion": {"type": "string"}}},
                     "pollingInterval": {"type": "integer", "minimum": 1},
                     "cooldownPeriod": {"type": "integer", "minimum": 0},
                     "minReplicaCount": {"type": "integer", "minimum": 0},
                     "maxReplicaCount": {"type": "integer", "minimum": 1},
                     "triggers": {"type": "array", "minItems": 1, "items": {
                         "type": "object", "required": ["type", "metadata"], "additionalProperties": False,
                         "properties": {"type": {"enum": ["azure-blob", "azure-servicebus"]},
                                        "metadata": {"type": "object",
                                                     "additionalProperties": {"type": "string"}}},
                         "allOf": [
                             {"if": {"properties": {"type": {"const": "azure-blob"}}},
                              "then": {"properties": {"metadata": {"required": ["blobContainerName",
                                                                                 "connectionFromEnv"]}}}},
                             {"if": {"properties": {"type": {"const": "azure-servicebus"}}},
                              "then": {"properties": {"metadata": {"required": ["queueName",
                                                                                 "connectionFromEnv"]}}}}]}}}}},
}


@dataclass(frozen=True)
class KubernetesOptions:
    """What shapes the manifests: names, replicas, and the app settings that go into the Secret."""

    name: str
    namespace: str = "default"
    min_replicas: int = 0
    max_replicas: int = 10
    settings: Mapping[str, str] = field(default_factory=dict)
    polling_interval: int = 30
    cooldown_period: int = 300
    # Scoring services (webservice, fpga): the device plugin's extended resource (e.g. an FPGA card's
    # ``amd.com/xilinx_u50_gen3x16_xdma_201920_3-0``), how many of it, and the nodes to run on.
    accelerator_resource: str | None = None
    accelerator_count: int = 1
    node_selector: Mapping[str, str] = field(default_factory=dict)
    # Each pod's CPU and memory requests: the HPA's CPU utilization is a share of the request (none: no scaling);
    # ``edgepack profile`` recommends values.
    cpu_request: str = "250m"
    memory_request: str = "256Mi"


def _resolve(value: str, settings: Mapping[str, str], what: str) -> str:
    m = _SETTING.fullmatch(value)
    if not m:
        return value
    if m.group(1) not in settings:
        raise DeployError(f"writing the KEDA trigger: {what} is the app setting expression '{value}'",
                          hint=f"KEDA needs the literal name: pass --setting {m.group(1)}=NAME.")
    return settings[m.group(1)]


def keda_trigger(binding: Mapping[str, Any], settings: Mapping[str, str]) -> dict[str, Any]:
    """The ScaledObject trigger for a blob or Service Bus trigger binding."""
    connection = binding.get("connection") or _DEFAULT_CONNECTIONS[binding["type"]]
    if binding["type"] == "blobTrigger":
        container, _, pattern = binding["path"].partition("/")
        metadata = {"blobContainerName": _resolve(container, settings, "the blob container"),
                    "blobCount": "5", "connectionFromEnv": connection}
        prefix = pattern.split("{", 1)[0]
        if prefix:
            metadata["blobPrefix"] = prefix
    else:
        metadata = {"queueName": _resolve(binding["queueName"], settings, "the queue name"),
                    "messageCount": "5", "connectionFromEnv": connection}
    return {"type": _KEDA_TYPES[binding["type"]], "metadata": metadata}


_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_MEMORY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def _check_requests(options: KubernetesOptions) -> None:
    if not _CPU.fullmatch(options.cpu_request):
        raise DeployError(f"--cpu-request '{options.cpu_request}': not a CPU quantity",
                          hint="Use cores (1, 0.5) or millicores (250m).")
    if not _MEMORY.fullmatch(options.memory_request):
        raise DeployError(f"--memory-request '{options.memory_request}': not a memory quantity",
                          hint="Use bytes with a suffix, e.g. 256Mi or 1Gi.")


def _meta(name: str, options: KubernetesOptions) -> dict[str, Any]:
    return {"name": name, "namespace": options.namespace,
            "labels": {"app": name, "app.kubernetes.io/managed-by": "edgepack"}}


def _requests(options: KubernetesOptions) -> dict[str, str]:
    return {"cpu": options.cpu_request, "memory": options.memory_request}


def _secret(options: KubernetesOptions, settings: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(options.name, options), "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(settings.items())}}


def _service(name: str, options: KubernetesOptions, port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, options),
            "spec": {"type": "ClusterIP", "selector": {"app": name},
                     "ports": [{"port": SERVICE_PORT, "targetPort": port, "protocol": "TCP"}]}}


def _autoscaler(name: str, options: KubernetesOptions) -> dict[str, Any]:
    """A HorizontalPodAutoscaler on CPU utilization (a share of each pod's CPU request)."""
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": _meta(name, options),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": max(1, options.min_replicas), "maxReplicas": options.max_replicas,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": 70}}}]}}


def _deployment(name: str, image: str, options: KubernetesOptions, functions: list[str], *, replicas: int,
                http: bool) -> dict[str, Any]:
    env = [{"name": f"AzureFunctionsJobHost__functions__{i}", "value": fn} for i, fn in enumerate(functions)]
    container: dict[str, Any] = {"name": "functions", "image": image, "env": env,
                                 "envFrom": [{"secretRef": {"name": options.name}}],
                                 "resources": {"requests": _requests(options)}}
    probe = {"httpGet": {"path": "/", "port": HTTP_PORT}, "periodSeconds": 10, "timeoutSeconds": 240,
             "failureThreshold": 3}
    if http:
        container["ports"] = [{"containerPort": HTTP_PORT}]
        container["readinessProbe"] = dict(probe)
        container["startupProbe"] = dict(probe)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, options),
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}}


def render_manifests(functions: list[dict[str, Any]], image: str, options: KubernetesOptions) -> list[dict[str, Any]]:
    """Secret, then per kind of trigger: Deployment + Service + HPA (HTTP), Deployment + ScaledObject (others).

    Raises:
        DeployError: an image reference without a digest, a trigger KEDA cannot scale on, or a bad request.
    """
    pinned(image)
    _check_requests(options)
    out = [_secret(options, {"FUNCTIONS_WORKER_RUNTIME": "python", **options.settings})]
    http = [f["name"] for f in functions if any(b["type"] == "httpTrigger" for b in f["bindings"])]
    other = [f for f in functions if f["name"] not in http]
    if http:
        name = f"{options.name}-http"
        out.append(_deployment(name, image, options, http, replicas=max(1, options.min_replicas), http=True))
        out.append(_service(name, options, HTTP_PORT))
        out.append(_autoscaler(name, options))
    if other:
        triggers = []
        for fn in other:
            for binding in fn["bindings"]:
                if binding["type"].endswith("Trigger"):
                    if binding["type"] not in _KEDA_TYPES:
                        raise DeployError(f"deploying function '{fn['name']}': KEDA scaling for "
                                          f"'{binding['type']}' is not supported",
                                          hint="Use HTTP, blob or Service Bus triggers.")
                    triggers.append(keda_trigger(binding, options.settings))
        out.append(_deployment(options.name, image, options, [f["name"] for f in other],
                               replicas=options.min_replicas, http=False))
        out.append({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": _meta(options.name, options),
                    "spec": {"scaleTargetRef": {"name": options.name}, "pollingInterval": options.polling_interval,
                             "cooldownPeriod": options.cooldown_period, "minReplicaCount": options.min_replicas,
                             "maxReplicaCount": options.max_replicas, "triggers": triggers}})
    validate_manifests(out)
    return out


# An extended resource name: a DNS subdomain prefix and a name (Kubernetes' qualified-name rules).
_RESOURCE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def render_service_manifests(image: str, *, target: str, port: int, auth: str,
                             options: KubernetesOptions) -> list[dict[str, Any]]:
    """Secret, Deployment, Service and HorizontalPodAutoscaler for a scoring image (webservice or fpga): probes
    on /health, the accelerator resource in the container's limits, the node selector on the pod.

    Raises:
        DeployError: no digest, an FPGA image without the resource name, a bad resource name, or a keyed image
            without its key among the settings.
    """
    pinned(image)
    _check_requests(options)
    if target == "fpga" and not options.accelerator_resource:
        raise DeployError(f"deploying FPGA image '{image}': no accelerator resource named",
                          hint="Pass --accelerator-resource with the name the card's device plugin registers "
                               "(kubectl describe node shows it, e.g. amd.com/xilinx_u50_gen3x16_xdma_201920_3-0).")
    if options.accelerator_resource and not _RESOURCE.fullmatch(options.accelerator_resource):
        raise DeployError(f"deploying '{image}': '{options.accelerator_resource}' is not an extended resource name",
                          hint="Use DOMAIN/NAME as the device plugin registers it, e.g. amd.com/xilinx_u200_...")
    if auth == "key" and "EDGEPACK_PRIMARY_KEY" not in options.settings:
        raise DeployError(f"deploying '{image}': the image requires a key and none was given",
                          hint="Pass --setting EDGEPACK_PRIMARY_KEY=... (and EDGEPACK_SECONDARY_KEY), or package "
                               "with --no-auth.")
    name = options.name
    probe = {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 5, "failureThreshold": 3}
    container: dict[str, Any] = {
        "name": "model", "image": image, "ports": [{"containerPort": port}],
        "envFrom": [{"secretRef": {"name": name}}],
        "readinessProbe": probe, "startupProbe": {**probe, "failureThreshold": 120},
        "livenessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 10}}
    container["resources"] = {"requests": _requests(options)}
    if options.accelerator_resource:
        count = str(options.accelerator_count)
        container["resources"]["limits"] = {options.accelerator_resource: count}
        container["resources"]["requests"][options.accelerator_resource] = count
    pod: dict[str, Any] = {"containers": [container]}
    if options.node_selector:
        pod["nodeSelector"] = dict(options.node_selector)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, options),
                  "spec": {"replicas": max(1, options.min_replicas), "selector": {"matchLabels": {"app": name}},
                           "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}}
    out = [_secret(options, options.settings), deployment, _service(name, options, port), _autoscaler(name, options)]
    validate_manifests(out)
    return out


def validate_manifests(manifests: list[dict[str, Any]]) -> None:
    """Validate every manifest (strictly: unknown fields are errors).

    Raises:
        DeployError: naming the manifest and the first problem found in it.
    """
    import jsonschema
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    for manifest in manifests:
        what = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
        try:
            if manifest.get("kind") == "ScaledObject":
                jsonschema.validate(manifest, SCALED_OBJECT_SCHEMA)
            else:
                kubernetes_validate.validate(manifest, version, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            raise DeployError(f"validating {what}: {exc.message}",
                              hint="This is a bug in the generated manifest; please report it.") from exc


def redact(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy for printing: Secret values replaced by ``<redacted>``."""
    out = []
    for m in manifests:
        if m["kind"] == "Secret":
            m = {**m, "data": {k: "<redacted>" for k in m["data"]}}
        out.append(m)
    return out
