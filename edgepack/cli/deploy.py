"""``edgepack deploy``: Kubernetes manifests (applied or printed), Azure Function Apps and IoT Edge devices."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edgepack import api
from edgepack.cli.support import PathArg, home_from_env, parse_pairs, registry_flags, registry_options
from edgepack.deploy import iotedge
from edgepack.deploy.iotedge import DEFAULT_RUNTIME, EDGE_RUNTIMES
from edgepack.runtime.edge import MODEL_PASSWORD, MODEL_USERNAME


@click.group()
def deploy() -> None:
    """Deploy a pushed image (by digest) to where it runs."""


@deploy.command("k8s")
@click.option("--image", required=True, metavar="REF@DIGEST",
              help="A pushed function, webservice or fpga image, pinned by digest.")
@click.option("--name", required=True, help="Name of the Deployment, Secret, Service and scaler.")
@click.option("--namespace", default="default", show_default=True)
@click.option("--min-replicas", default=0, show_default=True, type=click.IntRange(0))
@click.option("--max-replicas", default=10, show_default=True, type=click.IntRange(1))
@click.option("--setting", "settings", multiple=True, metavar="K=V",
              help="App setting for the Secret (connection strings; %Setting% names in trigger paths).")
@click.option("--accelerator-resource", metavar="NAME[=COUNT]",
              help="fpga (required) and webservice: the extended resource the card's device plugin registers "
                   "(kubectl describe node), e.g. amd.com/xilinx_u50_gen3x16_xdma_201920_3-0; COUNT defaults to 1.")
@click.option("--node-selector", "node_selector", multiple=True, metavar="K=V",
              help="webservice, fpga: a node label the pods must run on (repeat for several).")
@click.option("--cpu-request", default="250m", show_default=True,
              help="Each pod's CPU request, which the autoscaler's utilization is measured against "
                   "('edgepack profile' recommends one).")
@click.option("--memory-request", default="256Mi", show_default=True, help="Each pod's memory request.")
@click.option("--dry-run", is_flag=True, help="Print the manifests with Secret values redacted; apply nothing.")
@click.option("--kubeconfig", type=PathArg(exists=True, dir_okay=False),
              help="Apply the manifests (server-side apply) to this kubeconfig's cluster.")
@click.option("--context", "kube_context", help="The kubeconfig context (default: its current one).")
@registry_flags
def deploy_k8s(image: str, name: str, namespace: str, min_replicas: int, max_replicas: int,
               settings: tuple[str, ...], accelerator_resource: str | None, node_selector: tuple[str, ...],
               cpu_request: str, memory_request: str, dry_run: bool, kubeconfig: Path | None, kube_context: str | None,
               registry_username: str | None, ca_file: str | None, insecure_http: bool) -> None:
    """Validated manifests, applied with --kubeconfig, else written as YAML on stdout for 'kubectl apply -f -'.

    Function images: Secret, Deployment, Service + HPA for HTTP, KEDA ScaledObject for blob and Service Bus.
    Webservice and fpga images: Secret, Deployment (probes on /health, the accelerator resource in its limits,
    the node selector), Service and HPA."""
    import yaml

    from edgepack.deploy.kubernetes import redact

    resource, _, count = (accelerator_resource or "").partition("=")
    if count and not (count.isdigit() and int(count) > 0):
        raise click.BadParameter(f"'{accelerator_resource}': COUNT must be a positive number",
                                 param_hint="--accelerator-resource")
    options = api.KubernetesOptions(name=name, namespace=namespace, min_replicas=min_replicas,
                                    max_replicas=max_replicas, settings=parse_pairs(settings, "--setting"),
                                    accelerator_resource=resource or None, accelerator_count=int(count or 1),
                                    node_selector=parse_pairs(node_selector, "--node-selector"),
                                    cpu_request=cpu_request, memory_request=memory_request)
    manifests = api.kubernetes_manifests(image, options,
                                         registry=registry_options(registry_username, ca_file, insecure_http))
    if kubeconfig is not None and not dry_run:
        from edgepack.deploy.kubernetes_apply import apply_manifests

        for applied in apply_manifests(manifests, kubeconfig=kubeconfig, context=kube_context):
            click.echo(f"applied {applied}")
        return
    click.echo(yaml.safe_dump_all(redact(manifests) if dry_run else manifests, sort_keys=False), nl=False)


@deploy.command("functionapp")
@click.option("--subscription", required=True)
@click.option("--resource-group", required=True)
@click.option("--name", required=True, help="The Function App.")
@click.option("--plan", required=True, help="A Linux Elastic Premium or Dedicated plan in the resource group.")
@click.option("--image", required=True, metavar="REF@DIGEST", help="A pushed function image, pinned by digest.")
@click.option("--registry-username", metavar="USER", help="User the app (and edgepack) pull the image with.")
@click.option("--registry-password-env", metavar="VAR", help="Variable holding that user's password.")
@click.option("--setting", "settings", multiple=True, metavar="K=V", help="App setting to add or update.")
@click.option("--dry-run", is_flag=True, help="Send the reads, print the writes (secrets redacted), send nothing.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="CA bundle for the image registry.")
@click.option("--insecure-http", is_flag=True, help="Allow plain HTTP to a non-loopback image registry.")
def deploy_functionapp(subscription: str, resource_group: str, name: str, plan: str, image: str,
                       registry_username: str | None, registry_password_env: str | None, settings: tuple[str, ...],
                       dry_run: bool, ca_file: str | None, insecure_http: bool) -> None:
    """Create or update a Linux container Function App running IMAGE (ARM through azure-mgmt-web)."""
    from azure.identity import DefaultAzureCredential  # imported lazily: only Azure deploys need it
    from requests.adapters import HTTPAdapter

    from edgepack.deploy import functionapp

    password = _secret_env(registry_password_env, "--registry-password-env")
    adapter = functionapp.DryRunAdapter(HTTPAdapter()) if dry_run else None
    client = functionapp.make_client(DefaultAzureCredential(), subscription, adapter)
    options = functionapp.FunctionAppOptions(
        subscription=subscription, resource_group=resource_group, name=name, plan=plan, image=image,
        registry_username=registry_username, registry_password=password, settings=parse_pairs(settings, "--setting"))
    registry = api.RegistryOptions(username=registry_username, password=password, ca_file=ca_file,
                                   insecure_http=insecure_http)
    site = api.deploy_functionapp(options, client=client, registry=registry)
    if adapter is not None:
        recorded = [{**r.to_dict(), "body": functionapp.redact_settings(r.body)} for r in adapter.recorded]
        click.echo(json.dumps(recorded, indent=2))
    else:
        click.echo(site)


def _secret_env(var: str | None, option: str) -> str | None:
    if var and var not in os.environ:
        raise click.BadParameter(f"'{var}' is not set", param_hint=option)
    return os.environ.get(var) if var else None


@deploy.command("iot-edge")
@click.option("--image", required=True, metavar="REF@DIGEST", help="A pushed iot-edge module image, pinned by digest.")
@click.option("--device", metavar="ID", help="Apply the deployment on this IoT Edge device.")
@click.option("--target-condition", metavar="COND", help="Or create an automatic deployment for these devices "
                                                         "(e.g. \"tags.site='lyon'\"), with --name and --priority.")
@click.option("--name", metavar="NAME", help="The automatic deployment's id (its content cannot change later).")
@click.option("--priority", type=int, default=10, show_default=True, help="The automatic deployment's priority.")
@click.option("--module", default="edgepack-agent", show_default=True, help="The module's name on the device.")
@click.option("--model", metavar="REF@DIGEST", help="A model pushed with 'edgepack model push': the module twin's "
                                                   "desired model (the agent swaps it in without an image pull).")
@click.option("--route", "routes", multiple=True, metavar="NAME=ROUTE",
              help="An edgeHub route 'FROM ... INTO ...' (default: the module's output to $upstream).")
@click.option("--ttl", type=click.IntRange(1), default=7200, show_default=True,
              help="Seconds edgeHub keeps messages it cannot deliver.")
@click.option("--runtime", "edge_runtime", type=click.Choice(sorted(EDGE_RUNTIMES)), default=DEFAULT_RUNTIME,
              show_default=True,
              help="The IoT Edge LTS whose system module images the manifest names.")
@click.option("--env", "env", multiple=True, metavar="K=V", help="Environment of the module (EDGEPACK_* settings).")
@click.option("--registry-username", metavar="USER", help="User the device pulls the image with.")
@click.option("--registry-password-env", metavar="VAR", help="Variable holding that user's password.")
@click.option("--model-registry-username", metavar="USER", help="User the agent fetches models with.")
@click.option("--model-registry-password-env", metavar="VAR", help="Variable holding that user's password.")
@click.option("--hub-connection-env", metavar="VAR", default="IOTHUB_CONNECTION_STRING", show_default=True,
              help="Variable holding the hub's service connection string.")
@click.option("--local", is_flag=True, help="Send it to the local hub ('edgepack edge hub start'), which runs the "
                                            "modules on this machine's Docker engine; waits until they run.")
@click.option("--dry-run", is_flag=True, help="Print the manifest with secrets redacted; send nothing.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="CA bundle for the image registry.")
@click.option("--insecure-http", is_flag=True, help="Allow plain HTTP to a non-loopback image registry.")
def deploy_iot_edge(image: str, device: str | None, target_condition: str | None, name: str | None, priority: int,
                    module: str, model: str | None, routes: tuple[str, ...], ttl: int, edge_runtime: str,
                    env: tuple[str, ...], registry_username: str | None, registry_password_env: str | None,
                    model_registry_username: str | None, model_registry_password_env: str | None,
                    hub_connection_env: str, local: bool, dry_run: bool, ca_file: str | None,
                    insecure_http: bool) -> None:
    """Render the IoT Edge deployment manifest of IMAGE ($edgeAgent, $edgeHub, the module and its desired model),
    check it against the hub's limits, and apply it on --device or create it for --target-condition."""
    from edgepack.deploy import iotedge_apply

    if (device is None) == (target_condition is None):
        raise click.UsageError("pass either --device ID or --target-condition COND (with --name)")
    if target_condition is not None and not name:
        raise click.BadParameter("an automatic deployment needs a name", param_hint="--name")
    settings = parse_pairs(env, "--env")
    model_password = _secret_env(model_registry_password_env, "--model-registry-password-env")
    if model_registry_username:
        settings[MODEL_USERNAME] = model_registry_username
    if model_password:
        settings[MODEL_PASSWORD] = model_password
    credentials: tuple[iotedge.RegistryCredential, ...] = ()
    password = _secret_env(registry_password_env, "--registry-password-env")
    if registry_username:
        if password is None:
            raise click.BadParameter("the device needs the password too", param_hint="--registry-password-env")
        credentials = (iotedge.RegistryCredential(image.split("/", 1)[0], registry_username, password),)
    options = iotedge.EdgeDeploymentOptions(
        module=module, routes=tuple(parse_pairs(routes, "--route").items()), ttl=ttl, runtime=edge_runtime,
        env=settings, credentials=credentials)
    manifest = api.iot_edge_manifest(image, options, model=model,
                                     registry=registry_options(None, ca_file, insecure_http))
    if dry_run:
        click.echo(json.dumps(iotedge.redact(manifest), indent=2, sort_keys=True))
        return
    hub_ca: str | None = None
    connection: str | None
    if local:
        from edgepack.devtools.iothub import control

        found = control.endpoints(home_from_env().hub)
        connection, hub_ca = found.service_connection_string, found.ca_file
    else:
        connection = _secret_env(hub_connection_env, "--hub-connection-env")
        if not connection:
            raise click.BadParameter(f"'{hub_connection_env}' is not set: export the hub's service connection "
                                     "string (or pass --local for the local hub)", param_hint="--hub-connection-env")
    if device is not None:
        iotedge_apply.apply_on_device(manifest, device, connection_string=connection, ca_file=hub_ca)
        click.echo(f"applied on device {device}")
        if local:
            version = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][module]["version"]
            control.wait_module(home_from_env().hub, device, module, version)
            click.echo(f"module {module} running on {device}", err=True)
    else:
        created = iotedge_apply.create_deployment(manifest, str(name), target_condition=str(target_condition),
                                                  priority=priority, connection_string=connection, ca_file=hub_ca)
        click.echo(f"created deployment {created}")
