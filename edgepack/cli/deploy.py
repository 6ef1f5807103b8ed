"""``edgepack deploy``: Kubernetes manifests (applied or printed) and Azure Function Apps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edgepack import api
from edgepack.cli.support import parse_pairs, registry_flags, registry_options


@click.group()
def deploy() -> None:
    """Deploy a pushed image (by digest) to where it runs."""


@deploy.command("k8s")
@click.option("--image", required=True, metavar="REF@DIGEST", help="A pushed function image, pinned by digest.")
@click.option("--name", required=True, help="Name of the Deployment, Secret and ScaledObject.")
@click.option("--namespace", default="default", show_default=True)
@click.option("--min-replicas", default=0, show_default=True, type=click.IntRange(0))
@click.option("--max-replicas", default=10, show_default=True, type=click.IntRange(1))
@click.option("--setting", "settings", multiple=True, metavar="K=V",
              help="App setting for the Secret (connection strings; %Setting% names in trigger paths).")
@click.option("--dry-run", is_flag=True, help="Print the manifests with Secret values redacted; apply nothing.")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Apply the manifests (server-side apply) to this kubeconfig's cluster.")
@click.option("--context", "kube_context", help="The kubeconfig context (default: its current one).")
@registry_flags
def deploy_k8s(image: str, name: str, namespace: str, min_replicas: int, max_replicas: int,
               settings: tuple[str, ...], dry_run: bool, kubeconfig: Path | None, kube_context: str | None,
               registry_username: str | None, ca_file: str | None, insecure_http: bool) -> None:
    """Validated manifests (Secret, Deployment, Service + HPA for HTTP, KEDA ScaledObject for blob and Service
    Bus): applied with --kubeconfig, else written as YAML on stdout for 'kubectl apply -f -'."""
    import yaml

    from edgepack.deploy.kubernetes import redact

    options = api.KubernetesOptions(name=name, namespace=namespace, min_replicas=min_replicas,
                                    max_replicas=max_replicas, settings=parse_pairs(settings, "--setting"))
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

    if registry_password_env and registry_password_env not in os.environ:
        raise click.BadParameter(f"'{registry_password_env}' is not set", param_hint="--registry-password-env")
    password = os.environ.get(registry_password_env or "")
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
