"""The public library API: composition of the model store, config, packagers, builder, registry and deployers.

No click, no printing: each function returns values and raises ``EdgepackError`` subclasses. The CLI is a
thin shell over this module.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from edgepack import __version__
from edgepack.attest import collect
from edgepack.build import builder, imports
from edgepack.build.cache import Cache
from edgepack.build.dockerfile import write_context
from edgepack.config.load import load_config
from edgepack.deploy import keys as keystore
from edgepack.deploy import iotedge, local
from edgepack.deploy.kubernetes import KubernetesOptions, render_manifests, render_service_manifests
from edgepack.deploy.pinning import pinned
from edgepack.errors import (AttestationError, ConfigError, DeployError, EdgepackError, FleetError, InvalidModel,
                             LayoutError, NotQuantized, PackagingError, QuantizationInvariantError, RegistryError)
from edgepack.home import Home
from edgepack.models.artifact import ModelArtifact
from edgepack.models.store import LocalModelStore, describe_path, parse_model_ref
from edgepack.oci.descriptor import OCI_INDEX, OCI_MANIFEST, Descriptor, sha256_digest
from edgepack.oci.imageindex import image_index
from edgepack.oci.layout import layout_referrers, read_layout, read_layout_index, write_layout
from edgepack.oci.plan import ImagePlan
from edgepack.oci.ref import ImageRef
from edgepack.oci.referrers import PROVENANCE_TYPE, SBOM_TYPE, artifact_manifest
from edgepack.packagers import fpga as fpga_packager
from edgepack.packagers import plan_image
from edgepack.packagers.function_index import LABEL as FUNCTIONS_LABEL
from edgepack.profiling import session as profiling
from edgepack.registry import (IndexChild, Progress, PushResult, RegistryClient, fetch_config, push_image,
                               push_index)
from edgepack.registry import models as registry_models
from edgepack.registry import referrers
from edgepack.registry.pull import image_platforms
from edgepack.runtime.labels import ImageLabels
from edgepack.targets import FpgaTarget, Target

if TYPE_CHECKING:
    from edgepack.deploy import functionapp  # imports requests: loaded only to deploy a Function App

__all__ = [
    "RegistryOptions", "PackageResult", "register_model", "list_models", "get_model", "download_model",
    "delete_model", "push_model", "pull_model", "plan", "package", "push", "run", "stop", "logs", "run_keys",
    "regenerate_run_key",
    "kubernetes_manifests", "KubernetesOptions", "deploy_functionapp", "iot_edge_manifest", "profile",
    "fpga_profiles", "fpga_quantize", "fpga_report", "fpga_evaluate",
    "fleet_model", "fleet_image", "fleet_plan", "fleet_start", "fleet_run", "fleet_status", "fleet_control",
    "fleet_simulation", "attestations", "attestation", "verify", "Verification",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries: explicit credentials for one registry host (else docker config / env), a custom
    CA, plain HTTP.

    Credentials are chosen per host, always: ``username``/``password`` go only to ``host`` (the registry the
    command pushes to or deploys from, set by the API call), ``per_registry`` to their own hosts (a config's
    ``baseImageRegistry``), and every other registry gets what the docker config holds for it.
    """

    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    insecure_http: bool = False
    per_registry: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    host: str | None = None

    def for_host(self, ref: ImageRef | None) -> "RegistryOptions":
        """These options with the explicit credentials bound to ``ref``'s registry."""
        return replace(self, host=ref.registry) if ref is not None and self.host is None else self

    def credentials(self, registry: str) -> tuple[str, str] | None:
        """What to log in to ``registry`` with (None: the docker config's, if any)."""
        if self.username and registry == self.host:
            return self.username, self.password or ""
        return self.per_registry.get(registry)

    def client_for(self, ref: ImageRef) -> RegistryClient:
        """A new client for ``ref``'s registry with these options (the caller closes it)."""
        creds = self.credentials(ref.registry)
        return RegistryClient(ref.registry, credentials=creds, ca_file=self.ca_file,
                              insecure_http=self.insecure_http)


class _Clients:
    """One client per registry for the length of an API call, closed at the end (connection reuse)."""

    def __init__(self, options: RegistryOptions) -> None:
        self._options = options
        self._clients: dict[str, RegistryClient] = {}

    def __call__(self, ref: ImageRef) -> RegistryClient:
        if ref.registry not in self._clients:
            self._clients[ref.registry] = self._options.client_for(ref)
        return self._clients[ref.registry]

    def __enter__(self) -> "_Clients":
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self._clients.values():
            client.close()


@dataclass(frozen=True)
class PackageResult:
    """What ``package`` made: the plan, the image digest, and where the image went."""

    plan: ImagePlan
    digest: str
    layers: tuple[str, ...]
    new_layers: tuple[str, ...]
    layout: Path | None = None
    pushed: PushResult | None = None
    context: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        out: dict[str, Any] = {"target": self.plan.target, "digest": self.digest, "layers": list(self.layers),
                               "new_layers": list(self.new_layers), **self.details}
        out["layout"] = str(self.layout) if self.layout else None
        out["context"] = str(self.context) if self.context else None
        if self.pushed:
            out["pushed"] = {"ref": str(self.pushed.ref), "uploaded": list(self.pushed.uploaded),
                             "skipped": list(self.pushed.skipped), "mounted": list(self.pushed.mounted),
                             "bytes_sent": self.pushed.bytes_sent}
        return out


def _store(home: Home) -> LocalModelStore:
    return LocalModelStore(home.models)


def register_model(home: Home, name: str, path: Path, *, tags: Mapping[str, str] | None = None,
                   description: str = "") -> ModelArtifact:
    """Register a model file or folder as the next version of ``name``."""
    return _store(home).register(name, path, tags=dict(tags or {}), description=description)


def list_models(home: Home) -> list[ModelArtifact]:
    """Every registered version of every model."""
    return _store(home).list()


def get_model(home: Home, ref: str) -> ModelArtifact:
    """One model version by ``name[:version]`` (the latest when no version is given)."""
    name, version = parse_model_ref(ref)
    return _store(home).get(name, version)


def download_model(home: Home, ref: str, dest: Path) -> ModelArtifact:
    """Copy a registered model's files out to ``dest``."""
    model = get_model(home, ref)
    _store(home).download(model.name, model.version, dest)
    return model


def delete_model(home: Home, ref: str) -> None:
    """Delete one version, or every version when none is given."""
    name, version = parse_model_ref(ref)
    _store(home).delete(name, version)


def push_model(home: Home, ref: str, to: str, *, registry: RegistryOptions | None = None,
               progress: Progress | None = None) -> PushResult:
    """Store a registered model in an OCI registry as an artifact (a layer per file); ``result.ref`` pins it."""
    model = get_model(home, ref)
    dest = ImageRef.parse(to)
    if dest.digest:
        raise RegistryError(f"pushing model '{model.ref}' to '{to}': a digest names content that exists already",
                            hint="Give REGISTRY/REPO[:TAG]; the digest is printed after the push.")
    if not dest.tag:
        dest = dest.with_tag(str(model.version))
    with _Clients((registry or RegistryOptions()).for_host(dest)) as clients:
        return registry_models.push_model(clients(dest), dest, model, progress=progress)


def pull_model(home: Home, ref: str, *, registry: RegistryOptions | None = None,
               progress: Progress | None = None) -> tuple[ModelArtifact, str]:
    """Register a model from an OCI registry under its own name and version; returns it and its manifest digest."""
    source = ImageRef.parse(ref)
    with _Clients((registry or RegistryOptions()).for_host(source)) as clients:
        return registry_models.pull_model(clients(source), source, _store(home), Cache(home.cache).blob_dir,
                                          progress=progress)


def _models(home: Home, model_refs: str | tuple[str, ...], config: Any) -> tuple[ModelArtifact, ...]:
    """The models to package: those named, else those a v2 deployment names (registered, or read from its
    ``model.path``), else none.

    Raises:
        ModelNotFound: a named model is not registered.
    """
    refs = (model_refs,) if isinstance(model_refs, str) else tuple(model_refs)
    if refs:
        return tuple(get_model(home, ref) for ref in refs)
    out = []
    for source in config.models:
        if source.path is not None:
            out.append(describe_path(source.name, source.path, source.version))
        else:
            out.append(_store(home).get(source.name, source.version))
    return tuple(out)


def _target_models(home: Home, model_refs: str | tuple[str, ...], config: Any,
                   target: Target) -> tuple[ModelArtifact, ...]:
    """The models to package for ``target``: for an FPGA image, the quantized model and its CPU fallback.

    Raises:
        ModelNotFound: a named model is not registered.
        PackagingError: an FPGA image without exactly one model, or with no CPU fallback to be found.
    """
    models = _models(home, model_refs, config)
    if not isinstance(target, FpgaTarget):
        return models
    if len(models) != 1:
        raise PackagingError(f"packaging for fpga: {len(models)} models given; an FPGA image serves one",
                             hint="Pass one --model: the quantized model (edgepack fpga quantize makes it).")
    cpu_ref = target.cpu_model or models[0].tags.get(fpga_packager.SOURCE_TAG)
    if not cpu_ref:
        raise PackagingError(f"packaging '{models[0].ref}' for fpga: no CPU fallback model",
                             hint="Pass --cpu-model NAME:VERSION (the float model, or one quantized for a CPU).")
    return (models[0], get_model(home, cpu_ref))


def plan(home: Home, *, model_ref: str | tuple[str, ...] = (), config_path: Path, target: Target,
         base_image: str | None = None) -> ImagePlan:
    """Plan an image without building it (a dry run)."""
    config = load_config(config_path)
    return plan_image(_target_models(home, model_ref, config, target), config, target, base_image=base_image)


def _base_registry_credentials(config: Any, env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Credentials for the config's ``baseImageRegistry`` (the password comes from the named variable).

    Raises:
        ConfigError: the named variable is not set.
    """
    settings = config.base_image_registry
    if settings is None or not settings.username:
        return {}
    address = settings.address.split("://", 1)[-1].rstrip("/")
    if settings.password_env and settings.password_env not in env:
        raise ConfigError(f"{config.source}: baseImageRegistry.passwordEnv: '{settings.password_env}' is not set",
                          source=str(config.source), hint=f"Export {settings.password_env} before packaging.")
    return {address: (settings.username, env.get(settings.password_env or "", ""))}


def package(home: Home, *, model_ref: str | tuple[str, ...] = (), config_path: Path, target: Target,
            base_image: str | None = None,
            output: Path | None = None, tag: str | None = None, push_image_to_registry: bool = False,
            dockerfile_context: Path | None = None, registry: RegistryOptions | None = None,
            options: builder.BuildOptions | None = None, progress: Progress | None = None,
            env: Mapping[str, str] | None = None, platforms: tuple[str, ...] = ()) -> PackageResult:
    """Plan and build an image; write it as an OCI layout, push it, and/or export a Dockerfile context.

    ``platforms`` (``linux/amd64``, ``linux/arm64``; default the plan's, amd64): with several, one image per
    platform under an OCI image index, whose digest is the result's.

    Raises:
        ConfigError, ModelError, PackagingError, RegistryError: as the steps fail; nothing is pushed or
            written half-way (the manifest goes last, layouts and contexts are renamed into place).

    ``env`` supplies the variable named by the config's ``baseImageRegistry.passwordEnv``.
    """
    tag_ref = ImageRef.parse(tag) if tag else None
    if push_image_to_registry and tag_ref is None:
        raise EdgepackError("packaging with --push: no destination", hint="Pass --tag REGISTRY/REPO:TAG.")
    if tag_ref is not None and tag_ref.digest is not None:
        raise EdgepackError(f"packaging as '{tag}': a destination names a tag, not a digest (the digest is the "
                            "image's own, known once it is built)", hint="Pass --tag REGISTRY/REPO:TAG.")
    config = load_config(config_path)
    for note in config.notes:
        log.warning("note: %s", note)
    models = _target_models(home, model_ref, config, target)
    image_plan = plan_image(models, config, target, base_image=base_image)
    options = options or builder.BuildOptions()
    sources = collect.Sources(
        models=models, config_path=config_path, source=config.source_directory or config.entry_script, target=target,
        base_image=image_plan.base_image, options={"mtime": options.mtime, "pythonVersion": options.python_version},
        image=f"{tag_ref.registry}/{tag_ref.repository}" if tag_ref else "edgepack-image")
    registry = (registry or RegistryOptions()).for_host(tag_ref)
    base_creds = _base_registry_credentials(config, env or {})
    if base_creds:
        registry = replace(registry, per_registry={**registry.per_registry, **base_creds})
    with _Clients(registry) as clients:
        result = _package(image_plan, config, home=home, clients=clients, tag_ref=tag_ref, output=output,
                        push_image_to_registry=push_image_to_registry, dockerfile_context=dockerfile_context,
                        options=options, platforms=platforms or (image_plan.platform,), progress=progress,
                        sources=sources)
    built = result.details["python"]
    if config.python_version and built.split(".")[:2] != config.python_version.split("."):
        log.warning("note: the environment pins python %s, but the base image %s has python %s: dependencies "
                    "were resolved for python %s (choose a base with python %s to match, with --base-image)",
                    config.python_version, result.details["base"], built, built, config.python_version)
    return result


def _package(image_plan: ImagePlan, config: Any, *, home: Home, clients: _Clients, tag_ref: ImageRef | None,
             output: Path | None, push_image_to_registry: bool, dockerfile_context: Path | None,
             options: builder.BuildOptions, platforms: tuple[str, ...],
             progress: Progress | None, sources: collect.Sources) -> PackageResult:
    cache = Cache(home.cache)
    if len(platforms) > 1:
        if dockerfile_context is not None:
            raise EdgepackError("--dockerfile-context writes the context of one platform",
                                hint="Pass one --platform with --dockerfile-context.")
        return _package_platforms(image_plan, config, cache=cache, clients=clients, tag_ref=tag_ref, output=output,
                                  push_image_to_registry=push_image_to_registry, options=options,
                                  platforms=platforms, progress=progress, sources=sources)
    image_plan = replace(image_plan, platform=platforms[0])
    result = _build_checked(image_plan, config, cache=cache, clients=clients, options=options)
    built = result.image
    with ThreadPoolExecutor(max_workers=1) as pool:
        # the SBOM and provenance are written while the image's blobs upload (Python work against network I/O)
        attachments = pool.submit(lambda: _attachments(collect.build_record(sources, result, image_plan,
                                                                             version=__version__)))
        layout = None
        if output is not None:
            blobs = [(d.digest, built.blob_path(d.digest)) for d in built.blobs]
            write_layout(output, manifest=built.manifest, manifest_digest=built.manifest_digest, blobs=blobs,
                         ref_name=tag_ref.tag if tag_ref else None, artifacts=attachments.result())
            layout = output
        context = None
        if dockerfile_context is not None:
            specs = builder.layer_specs(image_plan, result, cache)
            context = write_context(dockerfile_context, image_plan, str(result.base.ref), specs)
        pushed = None
        if push_image_to_registry and tag_ref is not None:
            pushed = push_image(clients(tag_ref), tag_ref, manifest=built.manifest,
                                manifest_media_type=json.loads(built.manifest)["mediaType"], blobs=built.blobs,
                                open_blob=built.open_blob, mount_from=_mount_sources(result.base.ref, tag_ref),
                                progress=progress)
            kept = referrers.push_referrers(clients(tag_ref), tag_ref, built.manifest_digest, attachments.result())
        attachments.result()  # a failure to write them fails the run, whatever was asked for
    details = {"base": str(result.base.ref), "python": result.platform.python_version}
    if pushed is not None:
        details["referrers"] = kept  # how the registry keeps the SBOM and provenance
    return PackageResult(plan=image_plan, digest=built.manifest_digest, layers=tuple(d.digest for d in built.layers),
                         new_layers=tuple(d.digest for d in built.new_layers), layout=layout, pushed=pushed,
                         context=context, details=details)


def _build_checked(image_plan: ImagePlan, config: Any, *, cache: Cache, clients: _Clients,
                   options: builder.BuildOptions) -> builder.BuildResult:
    result = builder.build(image_plan, cache=cache, client_for=clients, options=options)
    # before anything is written or pushed
    imports.check(config.entry_script, source_dir=config.source_directory, sites=result.sites,
                  base_modules=result.base_modules, base=str(result.base.ref))
    return result


def _package_platforms(image_plan: ImagePlan, config: Any, *, cache: Cache, clients: _Clients,
                       tag_ref: ImageRef | None, output: Path | None, push_image_to_registry: bool,
                       options: builder.BuildOptions, platforms: tuple[str, ...],
                       progress: Progress | None, sources: collect.Sources) -> PackageResult:
    """One image per platform (each from that platform's base and wheels; nothing runs) under one index, each
    with its own SBOM and provenance."""
    results = [(p, _build_checked(replace(image_plan, platform=p), config, cache=cache, clients=clients,
                                  options=options)) for p in platforms]
    artifacts = {p: _attachments(collect.build_record(sources, r, replace(image_plan, platform=p),
                                                      version=__version__)) for p, r in results}
    index = image_index([(p, r.image.manifest) for p, r in results])
    digest = sha256_digest(index)
    layout = None
    if output is not None:
        blobs = {d.digest: r.image.blob_path(d.digest) for _, r in results for d in r.image.blobs}
        write_layout(output, manifest=index, manifest_digest=digest, blobs=blobs.items(),
                     ref_name=tag_ref.tag if tag_ref else None, media_type=OCI_INDEX,
                     manifests=[r.image.manifest for _, r in results],
                     artifacts=[a for p in platforms for a in artifacts[p]])
        layout = output
    pushed = None
    if push_image_to_registry and tag_ref is not None:
        children = [IndexChild(r.image.manifest, OCI_MANIFEST, r.image.blobs, r.image.open_blob) for _, r in results]
        pushed = push_index(clients(tag_ref), tag_ref, index=index, media_type=OCI_INDEX, children=children,
                            mount_from=_mount_sources(results[0][1].base.ref, tag_ref), progress=progress)
        kept = {referrers.push_referrers(clients(tag_ref), tag_ref, r.image.manifest_digest, artifacts[p])
                for p, r in results}
    first = results[0][1]
    return PackageResult(
        plan=replace(image_plan, platform=platforms[0]), digest=digest,
        layers=tuple(dict.fromkeys(d.digest for _, r in results for d in r.image.layers)),
        new_layers=tuple(dict.fromkeys(d.digest for _, r in results for d in r.image.new_layers)),
        layout=layout, pushed=pushed,
        details={"base": str(first.base.ref).split("@", 1)[0], "python": first.platform.python_version,
                 "platforms": {p: r.image.manifest_digest for p, r in results},
                 **({"referrers": ", ".join(sorted(kept))} if pushed is not None else {})})


def _attachments(record: Any) -> list[tuple[bytes, bytes]]:
    """The SBOM and provenance of one image, each with the artifact manifest that attaches it to the image."""
    from edgepack.attest import provenance, sbom

    subject = Descriptor(record.media_type, record.digest, record.size)
    return [(artifact_manifest(subject, kind, document), document)
            for kind, document in ((SBOM_TYPE, sbom.sbom(record)), (PROVENANCE_TYPE, provenance.statement(record)))]


def _mount_sources(base: ImageRef, dest: ImageRef) -> tuple[str, ...]:
    """Repositories on the destination registry that may already hold the base layers."""
    return (base.repository,) if base.registry == dest.registry and base.repository != dest.repository else ()


def push(layout_dir: Path, to: str, *, registry: RegistryOptions | None = None,
         progress: Progress | None = None) -> PushResult:
    """Push the image of an OCI layout to ``to`` (``registry/repo:tag``), the manifest last, then the SBOM and
    provenance the layout holds as its referrers."""
    ref = ImageRef.parse(to)
    index = read_layout_index(layout_dir)
    image = next(iter(index.images.values())) if index and index.images else read_layout(layout_dir)
    base_name = json.loads(image.manifest).get("annotations", {}).get("org.opencontainers.image.base.name")
    mounts: tuple[str, ...] = ()
    if base_name:
        try:
            mounts = _mount_sources(ImageRef.parse(base_name), ref)
        except EdgepackError:
            mounts = ()
    attached: dict[str, list[tuple[bytes, bytes]]] = {}
    for entry, data, document in layout_referrers(layout_dir):
        manifest = (layout_dir / "blobs" / "sha256" / entry.digest.split(":", 1)[1]).read_bytes()
        attached.setdefault(data["subject"]["digest"], []).append((manifest, document))
    with _Clients((registry or RegistryOptions()).for_host(ref)) as clients:
        if index is not None:
            children = [IndexChild(i.manifest, i.manifest_media_type, i.blobs, i.open_blob)
                        for i in index.images.values()]
            result = push_index(clients(ref), ref, index=index.manifest, media_type=OCI_INDEX, children=children,
                                mount_from=mounts, progress=progress)
        else:
            result = push_image(clients(ref), ref, manifest=image.manifest,
                                manifest_media_type=image.manifest_media_type, blobs=image.blobs,
                                open_blob=image.open_blob, mount_from=mounts, progress=progress)
        for subject, artifacts in attached.items():  # the SBOM and provenance follow the image
            referrers.push_referrers(clients(ref), ref, subject, artifacts)
        return result


def kubernetes_manifests(image: str, options: KubernetesOptions, *,
                         registry: RegistryOptions | None = None) -> list[dict[str, Any]]:
    """Validated Kubernetes manifests for a pushed image: a function image from its indexed function metadata, a
    scoring image (webservice, fpga) from its labels.

    Raises:
        DeployError: a tag without digest, an image edgepack did not make for these targets, a trigger KEDA cannot
            scale, or an FPGA image without its accelerator resource.
    """
    ref, labels = _image_labels(image, registry)
    if FUNCTIONS_LABEL in labels:
        return render_manifests(json.loads(labels[FUNCTIONS_LABEL]), str(ref), options)
    read = ImageLabels.from_labels(labels)
    if read is None or read.target not in ("webservice", "fpga"):
        raise DeployError(f"deploying '{ref}' to Kubernetes: not an edgepack function, webservice or fpga image",
                          hint="Package with --target webservice, fpga or a functions target.")
    return render_service_manifests(str(ref), target=read.target, port=read.port, auth=read.auth, options=options)


def iot_edge_manifest(image: str, options: iotedge.EdgeDeploymentOptions, *, model: str | None = None,
                      registry: RegistryOptions | None = None) -> dict[str, Any]:
    """The IoT Edge deployment manifest of a pushed ``iot-edge`` image (read from its labels), with the module
    twin's desired ``model`` when ``model`` (a model artifact REF@DIGEST) is named.

    Raises:
        DeployError: no digest, not a module image, or a manifest the hub would refuse (named).
        RegistryError: the image or the model cannot be read.
    """
    ref, raw = _image_labels(image, registry)
    labels = ImageLabels.from_labels(raw)
    module = iotedge.ModuleImage(str(ref), labels.target if labels else "", (labels and labels.module_input) or "",
                                 (labels and labels.module_output) or "")
    if model is not None:
        options = replace(options, model=fleet_model(model, registry=registry))
    return iotedge.render_manifest(module, options)


def _image_labels(image: str, registry: RegistryOptions | None) -> tuple[ImageRef, dict[str, str]]:
    """The pinned reference of a pushed image and the labels of its config.

    Raises:
        DeployError: no digest. RegistryError: the image cannot be read.
    """
    ref = pinned(image)
    with _Clients((registry or RegistryOptions()).for_host(ref)) as clients:
        config = fetch_config(clients(ref), ref)
    return ref, (config.get("config") or {}).get("Labels") or {}


def _function_metadata(image: str, registry: RegistryOptions | None) -> tuple[ImageRef, list[dict[str, Any]]]:
    """The pinned reference of a function image and its indexed functions (read from the image config)."""
    ref, labels = _image_labels(image, registry)
    if FUNCTIONS_LABEL not in labels:
        raise DeployError(f"deploying '{ref}': not an edgepack function image (no {FUNCTIONS_LABEL} label)",
                          hint="Package with --target functions-http, functions-blob or functions-servicebus.")
    return ref, json.loads(labels[FUNCTIONS_LABEL])


def deploy_functionapp(options: functionapp.FunctionAppOptions, *, client: Any,
                       registry: RegistryOptions | None = None) -> str:
    """Deploy a pushed function image to an Azure Function App; returns the site's resource id.

    The connection settings its triggers name (read from the image's indexed metadata) must be set on the app
    or given in ``options.settings``; nothing is sent when they are not.
    """
    _, functions = _function_metadata(options.image, registry)
    needed = {b.get("connection") for f in functions for b in f["bindings"] if b.get("connection")}
    options = replace(options, required_settings=tuple(sorted({"AzureWebJobsStorage", *needed})))
    from edgepack.deploy import functionapp

    return functionapp.deploy(client, options)


def run(home: Home, source: str, *, daemon: Any, name: str | None = None, port: int | None = None,
        env: Mapping[str, str] | None = None, timeout: float = 120.0, host_network: bool = False) -> local.RunResult:
    """Start an image (OCI layout folder or registry reference) on the local engine and wait until ready."""
    return local.run(daemon, source, runs_dir=home.runs, name=name, port=port, env=env, timeout=timeout,
                     host_network=host_network)


def stop(home: Home, name: str, *, daemon: Any) -> None:
    """Stop and remove a local run, and forget its keys."""
    folder = local.run_folder(home.runs, name)
    daemon.stop(name)
    shutil.rmtree(folder, ignore_errors=True)


def logs(name: str, *, daemon: Any, tail: int | None = None) -> str:
    """The output of a local run."""
    return daemon.logs(local.check_run_name(name), tail=tail)


def run_keys(home: Home, name: str) -> dict[str, str]:
    """The keys of a local run."""
    return keystore.read_keys(local.run_folder(home.runs, name))


def regenerate_run_key(home: Home, name: str, which: str) -> dict[str, str]:
    """Replace one key of a local run; the server picks it up without a restart."""
    return keystore.regenerate_key(local.run_folder(home.runs, name), which)


def profile(home: Home, *, model_ref: str, config_path: Path, sample_path: Path,
            concurrencies: tuple[int, ...] = (1, 2, 4, 8), seconds: float = 5.0, startup_timeout: float = 120.0,
            progress: Callable[[str], None] | None = None) -> profiling.ProfileReport:
    """Serve the model locally under load at each concurrency; measure and recommend CPU and memory.

    Raises:
        ConfigError, ModelNotFound: as loading fails. ProfileError: the runtime did not start, the sample was
            refused, or no level ran without errors.
    """
    config = load_config(config_path)
    model = get_model(home, model_ref)
    samples = profiling.read_samples(sample_path)
    return profiling.profile(model, config, samples, concurrencies=concurrencies, seconds=seconds,
                             startup_timeout=startup_timeout, progress=progress)


def fpga_profiles() -> list[dict[str, Any]]:
    """The accelerator profiles edgepack knows, each with its sources."""
    from fpga.profile import profiles

    return [p.summary() for p in profiles()]


def _onnx_path(model: ModelArtifact) -> Path:
    return model.root / fpga_packager.onnx_file(model)


def _session_specs(path: Path) -> Any:
    import onnxruntime as ort

    from fpga.data import input_specs

    try:
        return input_specs(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InvalidModel(f"loading '{path.name}' in onnxruntime: {type(exc).__name__}: {exc}",
                           hint="Give an ONNX model onnxruntime can load.") from exc


def _fpga_inputs(model: ModelArtifact, path: Path, config_path: Path | None, *, limit: int | None = None,
                 label_field: str | None = None) -> tuple[dict[str, Any], Any]:
    """The samples at ``path`` for ``model``'s inputs, and the labels a label field gave (else None): arrays
    from .npy/.npz files, or, from a JSON-lines file of request bodies, what the entry script feeds the model.

    Raises:
        CalibrationDataError: as reading or capturing fails.
    """
    from edgepack.errors import CalibrationDataError
    from edgepack.profiling import capture
    from fpga import data

    specs = _session_specs(_onnx_path(model))
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        if label_field is not None:
            raise CalibrationDataError(f"reading '{path}': --label-field reads JSON-lines request bodies",
                                       hint="For arrays, pass --labels FILE.npy.")
        return data.load_inputs(path, specs, limit=limit), None
    if config_path is None:
        raise CalibrationDataError(f"reading requests '{path}': the entry script turns them into model inputs, "
                                   "and no inference config names it", hint="Pass --inference-config.")
    bodies, labels = capture.read_bodies(path, label_field)
    feeds = capture.capture_inputs(model, load_config(config_path), bodies)
    inputs = data.check_inputs(capture.join_inputs(feeds), specs, path, limit)
    return inputs, capture.request_labels(labels, feeds) if label_field is not None else None


def fpga_quantize(home: Home, *, model_ref: str, calibration: Path, profile: str | None = None,
                  samples: int | None = None, as_name: str | None = None, for_cpu: bool = False,
                  config_path: Path | None = None) -> ModelArtifact:
    """Quantize a registered float model for an accelerator profile on the user's calibration data, check the
    result against the profile and register it as the next version of the model (or of ``as_name``), with its
    source, profile, method and calibration digest as tags. Nothing is registered when a step fails.
    ``for_cpu`` makes a CPU fallback instead (u8s8 QDQ, which onnxruntime's CPU kernels run fastest).
    ``calibration`` may be a JSON-lines file of request bodies, read through the entry script of ``config_path``.

    Raises:
        UnknownAcceleratorProfile, CalibrationDataError, QuantizationInvariantError, InvalidModel, FpgaError.
    """
    import tempfile


    from fpga import invariants, quantize
    from fpga.profile import load_profile

    chosen = load_profile(profile)
    model = get_model(home, model_ref)
    source = _onnx_path(model)
    if invariants.is_quantized(invariants.load_model(source)):
        raise NotQuantized(f"quantizing '{model.ref}': it is quantized already",
                           hint="Quantize the float model it was made from.")
    inputs, _ = _fpga_inputs(model, calibration, config_path, limit=samples)
    with tempfile.TemporaryDirectory(prefix="edgepack-quantize-") as tmp:
        folder = Path(tmp) / (model.folder or "model")
        folder.mkdir()
        for f in model.files:
            if f.path != fpga_packager.onnx_file(model):
                (folder / f.path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(model.root / f.path, folder / f.path)
        target = folder / fpga_packager.onnx_file(model)
        target.parent.mkdir(parents=True, exist_ok=True)
        made = (quantize.quantize_for_cpu(source, target, inputs) if for_cpu
                else quantize.quantize(source, target, inputs, chosen))
        found = [] if for_cpu else invariants.problems(invariants.load_model(target), chosen)
        if found:
            raise QuantizationInvariantError(f"quantizing '{model.ref}' for '{chosen.name}': the result breaks the "
                                             "profile's rules", problems=tuple(found),
                                             hint="Simplify the model's unsupported parts, or pick another profile.")
        tags = {fpga_packager.SOURCE_TAG: model.ref, **({} if for_cpu else {fpga_packager.PROFILE_TAG: chosen.name}),
                fpga_packager.METHOD_TAG: made.method, fpga_packager.CALIBRATION_TAG: made.calibration_sha256,
                "edgepack.fpga.calibration_samples": str(made.samples),
                "edgepack.fpga.role": "cpu-fallback" if for_cpu else "accelerator"}
        what = "for the CPU (u8s8 QDQ)" if for_cpu else f"for {chosen.name} (INT8 QDQ, power-of-two)"
        return register_model(home, as_name or model.name, folder if model.folder else target, tags=tags,
                              description=f"{model.ref} quantized {what}")


def fpga_report(home: Home, *, model_ref: str, profile: str | None = None) -> dict[str, Any]:
    """The per-node placement estimate of a quantized model on a profile's accelerator.

    Raises:
        NotQuantized: a float model. UnknownAcceleratorProfile, InvalidModel.
    """

    from fpga import invariants, partition
    from fpga.profile import load_profile

    model = get_model(home, model_ref)
    chosen = load_profile(profile or model.tags.get(fpga_packager.PROFILE_TAG))
    graph = invariants.load_model(_onnx_path(model))
    if not invariants.is_quantized(graph):
        raise NotQuantized(f"reporting '{model.ref}' on {chosen.accelerator}: the model is not quantized, so no "
                           "node of it would run on the accelerator",
                           hint=f"Quantize it first: edgepack fpga quantize --model {model.ref} --calibration DATA")
    report = partition.estimate(graph, chosen)
    report["model"] = model.ref
    report["invariant_problems"] = invariants.problems(graph, chosen)
    return report


def fpga_evaluate(home: Home, *, model_ref: str, quantized_ref: str, data_path: Path, labels_path: Path | None,
                  max_drop: float = 0.01, cpu_model_ref: str | None = None, output: str | None = None,
                  config_path: Path | None = None, label_field: str | None = None) -> dict[str, Any]:
    """FP32 against the quantized model (and a CPU fallback other than the FP32 model) on held-out data: arrays,
    or a JSON-lines file of request bodies read through the entry script of ``config_path`` (labels from
    ``labels_path`` or each body's ``label_field``).

    Raises:
        CalibrationDataError: data or labels missing or not fitting. ModelNotFound, InvalidModel.
    """
    from fpga import data, evaluate

    reference, quantized = get_model(home, model_ref), get_model(home, quantized_ref)
    artifacts = [evaluate.Artifact("reference", reference.ref, _onnx_path(reference)),
                 evaluate.Artifact("accelerator", quantized.ref, _onnx_path(quantized))]
    if cpu_model_ref is not None and get_model(home, cpu_model_ref).ref != reference.ref:
        cpu = get_model(home, cpu_model_ref)
        artifacts.append(evaluate.Artifact("cpu-fallback", cpu.ref, _onnx_path(cpu)))
    inputs, found = _fpga_inputs(reference, data_path, config_path, label_field=label_field)
    labels = found if found is not None else data.load_labels_for(data_path, labels_path, data.sample_count(inputs))
    result = evaluate.evaluate(tuple(artifacts), inputs, labels, max_drop=max_drop, output=output)
    result["note"] = ("measured with onnxruntime's CPU provider on this machine; accuracy and latency on the "
                      "accelerator are not verified")
    return result


def fleet_model(model: str, *, registry: RegistryOptions | None = None) -> dict[str, Any]:
    """The agents' desired ``model`` for a model artifact pushed with ``model push`` (read from its manifest);
    what ``deploy iot-edge --model`` and ``fleet rollout`` set.

    Raises:
        DeployError: no digest. RegistryError: the artifact cannot be read.
    """
    model_ref = pinned(model)
    with _Clients((registry or RegistryOptions()).for_host(model_ref)) as clients:
        manifest, digest = registry_models.fetch_model_manifest(clients(model_ref), model_ref)
    return {"version": manifest.version, "digest": digest, "uri": str(model_ref), "sizeBytes": manifest.size}


def fleet_simulation(home: Home, *, model_ref: str, config_path: Path, spec: Any,
                     body: bytes | None = None) -> Any:
    """A simulated fleet on the running local hub: ``spec.devices`` real agents serving ``model_ref`` with the
    config's entry script, registered, tagged and started (the caller sends traffic and stops it).

    Raises:
        ConfigError, ModelNotFound: as loading fails. HubError: no local hub runs. FleetError: no input to send.
    """
    from edgepack.devtools.fleetsim.simulator import Simulation
    from edgepack.devtools.iothub import control

    config = load_config(config_path)
    model = get_model(home, model_ref)
    endpoints = control.endpoints(home.hub)
    if body is None:
        if config.input_sample is None:
            raise FleetError(f"simulating a fleet: {config_path} has no input sample to send",
                             hint="Add an inputSample to the inference config, or pass --body FILE.")
        body = json.dumps(config.input_sample).encode()
    workdir = home.root / "fleet-sim" / spec.prefix
    shutil.rmtree(workdir / "app", ignore_errors=True)
    (workdir / "app").mkdir(parents=True)
    runtime_config = profiling.write_runtime_config(model, config, workdir / "app", target="iot-edge")
    simulation = Simulation(spec, hub_home=home.hub, endpoints=endpoints, runtime_config=runtime_config,
                            workdir=workdir, body=body)
    simulation.start(simulation.setup())
    return simulation


def fleet_image(image: str, *, module: str = "edgepack-agent", env: Mapping[str, str] | None = None,
                state_host_dir: str = "", registry: RegistryOptions | None = None) -> dict[str, Any]:
    """A new agent image as a rollout's layer sets it: ``{"ref": REF@DIGEST, "module": spec}``, the module spec
    ``deploy iot-edge`` writes for it with ``env`` and ``state_host_dir`` (the image's labels read from the
    registry). The spec replaces the module's whole, so what the base deployment gave it (env, the state folder)
    must be given again.

    Raises:
        DeployError: no digest, or not a module image. RegistryError: the image cannot be read.
    """
    options = iotedge.EdgeDeploymentOptions(module=module, env=dict(env or {}), state_host_dir=state_host_dir)
    manifest = iot_edge_manifest(image, options, registry=registry)
    spec = manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][module]
    return {"ref": spec["settings"]["image"], "module": spec}


def _rollouts(home: Home) -> Any:
    """The home's rollout store."""
    from edgepack.fleet import runner
    from edgepack.fleet.state import RolloutStore

    return RolloutStore(runner.folder(home.root))


def fleet_plan(home: Home, hub: Any, request: Any, *, now: float) -> dict[str, Any]:
    """A rollout's first state (its waves), computed from the hub's devices; nothing is sent or recorded.

    Raises:
        FleetError: the name is in use, or the target matches no device.
    """
    from edgepack.fleet import runner

    return runner.plan(hub, _rollouts(home), request, now)


def fleet_start(home: Home, state: dict[str, Any]) -> None:
    """Record a planned rollout (a name is used once)."""
    _rollouts(home).create(state["name"], state)


def fleet_run(home: Home, hub: Any, name: str, *, poll_s: float = 5.0,
              progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Drive a recorded rollout to its end under its lease (a restarted controller resumes where it stopped).

    Raises:
        LeaseHeld: another controller runs it. FleetError: the hub refused a step.
    """
    from edgepack.fleet import runner

    return runner.run(hub, _rollouts(home), name, poll_s=poll_s, progress=progress)


def fleet_status(home: Home, name: str | None = None) -> list[dict[str, Any]]:
    """The recorded state of one rollout, or of every rollout of this home."""
    from edgepack.fleet import runner

    return runner.status(_rollouts(home), name)


def fleet_control(home: Home, name: str, request: str, *, hub: Any = None, now: float = 0.0) -> str:
    """``pause``, ``resume`` or ``abort`` a rollout: a running controller is asked through the control file (a
    stopped one reads it when started again); an abort with none running rolls back at once on ``hub``. Returns
    what was done.

    Raises:
        FleetError: no such rollout, or an abort with no controller running and no hub to roll back on.
    """
    from edgepack.errors import FleetError, LeaseHeld
    from edgepack.fleet import runner

    store = _rollouts(home)
    store.load(name)  # names a missing rollout
    if request == "abort":
        try:
            if hub is None:
                with store.lease(name):
                    pass
                raise FleetError(f"aborting rollout '{name}': no controller is running it, and no hub was named "
                                 "to roll back on", hint="Pass --local, or set the variable --hub-connection-env "
                                                         "names to the hub's connection string.")
            runner.abort_now(hub, store, name, now)
            return "rolled back"
        except LeaseHeld:
            pass
    runner.request_control(store, name, request)
    return "asked the controller"


def _is_layout(source: str) -> bool:
    """True for an OCI layout folder; False for a registry reference.

    Raises:
        LayoutError: ``source`` names a folder or file that is not a layout.
    """
    path = Path(source)
    if (path / "oci-layout").is_file():
        return True
    if path.exists() or source.startswith(("/", "./", "../", "~")):
        raise LayoutError(f"reading image layout '{source}': "
                          + ("not an OCI image layout (no oci-layout file)" if path.exists() else "no such folder"),
                          hint="Pass a folder written by 'edgepack package --output', or a registry reference "
                               "REGISTRY/REPO:TAG.")
    return False


_KINDS = {SBOM_TYPE: "sbom", PROVENANCE_TYPE: "provenance"}


def _listing(source: str, clients: _Clients) -> dict[str, dict[str, Callable[[], bytes]]]:
    """``{platform: {kind: read}}`` of the image's records; a registry's documents are fetched only by ``read``.

    Raises:
        AttestationError: the image has none; LayoutError, RegistryError: it could not be read.
    """
    found: dict[str, dict[str, Callable[[], bytes]]] = {}
    if _is_layout(source):
        root = Path(source)
        index = read_layout_index(root)
        if index is not None:
            platforms = {i.manifest_digest: p for p, i in index.images.items()}
        else:
            image = read_layout(root)
            platforms = {image.manifest_digest: _layout_platform(image)}
        for entry, data, document in layout_referrers(root):
            platform = platforms.get(data["subject"]["digest"])
            if platform and entry.artifact_type in _KINDS:
                found.setdefault(platform, {})[_KINDS[entry.artifact_type]] = functools.partial(bytes, document)
    else:
        ref = ImageRef.parse(source)
        client = clients(ref)
        for platform, digest in image_platforms(client, ref).items():
            listed, _ = referrers.list_referrers(client, ref, digest)
            for desc in listed:
                if desc.artifact_type in _KINDS:
                    found.setdefault(platform, {})[_KINDS[desc.artifact_type]] = functools.partial(
                        referrers.fetch_document, client, ref, desc.digest)
    if not found:
        raise AttestationError(f"reading the SBOM and provenance of '{source}': the image has none",
                               hint="Package it again with this edgepack: every image gets both.")
    return found


def _registry_for(source: str, registry: RegistryOptions | None) -> RegistryOptions:
    return (registry or RegistryOptions()).for_host(None if _is_layout(source) else ImageRef.parse(source))


def attestations(source: str, *, registry: RegistryOptions | None = None) -> dict[str, dict[str, bytes]]:
    """The SBOM and provenance of each platform's image: ``{platform: {"sbom": ..., "provenance": ...}}``.
    ``source`` is a registry reference or an OCI layout folder.

    Raises:
        AttestationError: the image has none; LayoutError, RegistryError: it could not be read.
    """
    with _Clients(_registry_for(source, registry)) as clients:
        return {platform: {kind: read() for kind, read in kinds.items()}
                for platform, kinds in _listing(source, clients).items()}


def _layout_platform(image: Any) -> str:
    config = json.loads(image.blob_path(image.config.digest).read_bytes())
    return f"{config.get('os', 'linux')}/{config.get('architecture', 'amd64')}"


def attestation(source: str, kind: str, *, platform: str | None = None,
                registry: RegistryOptions | None = None) -> bytes:
    """One document (``kind`` "sbom" or "provenance") of the image for ``platform`` (needed when the image has
    several); only that document is fetched.

    Raises:
        AttestationError: no such document, or several platforms and none chosen.
    """
    with _Clients(_registry_for(source, registry)) as clients:
        found = _listing(source, clients)
        if platform is None and len(found) > 1:
            raise AttestationError(f"reading the {kind} of '{source}': it is a multi-platform image",
                                   hint=f"Pass --platform, one of {', '.join(sorted(found))}.")
        chosen = platform or next(iter(found))
        if chosen not in found or kind not in found[chosen]:
            raise AttestationError(f"reading the {kind} of '{source}': none for {chosen}",
                                   hint=f"It has them for {', '.join(sorted(found)) or 'no platform'}.")
        return found[chosen][kind]()


@dataclass(frozen=True)
class Verification:
    """The outcome of ``verify``: the image's digest, the rebuild's, and what differs (empty when they match)."""

    digest: str
    rebuilt: str | None
    differences: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {"digest": self.digest, "rebuilt": self.rebuilt, "verified": not self.differences,
                "differences": list(self.differences)}


def verify(home: Home, source: str, *, platform: str | None = None, registry: RegistryOptions | None = None,
           env: Mapping[str, str] | None = None) -> Verification:
    """Rebuild the image of ``source`` from the inputs its provenance records, and compare digests.

    Inputs that are missing here or changed since (model, inference config, source directory) are named
    without rebuilding; otherwise the rebuild's layers and dependency lock are compared with the recorded ones.
    ``env`` supplies the base registry's password variable, as for ``package``.

    Raises:
        AttestationError: the image has no provenance; as ``package`` while rebuilding.
    """
    from edgepack.attest import provenance
    from edgepack.attest import verify as checks
    from edgepack.attest.record import DEPENDENCY_LOCK
    from edgepack.attest.record import model_digest as record_digest
    from edgepack.targets import target_from_dict

    document = json.loads(attestation(source, "provenance", platform=platform, registry=registry))
    digest = "sha256:" + document["subject"][0]["digest"]["sha256"]
    inputs = provenance.inputs_of(document)

    def model_digest(ref: str) -> str | None:
        try:
            return record_digest(get_model(home, ref).sha256)
        except EdgepackError:
            return None

    changed = checks.changed_inputs(inputs, model_digest)
    if changed:
        return Verification(digest, None, tuple(str(d) for d in changed))
    params = document["predicate"]["buildDefinition"]["externalParameters"]
    base = next(i.uri for i in inputs if i.kind == "base image")
    with tempfile.TemporaryDirectory(prefix="edgepack-verify-") as tmp:
        out = Path(tmp) / "layout"
        result = package(home, model_ref=tuple(params["models"]), config_path=Path(params["inferenceConfig"]),
                         target=target_from_dict(params["target"]), base_image=base, output=out,
                         registry=registry, env=env, platforms=(params["platform"],),
                         options=builder.BuildOptions(mtime=int(params["options"].get("mtime") or 0),
                                                      python_version=params["options"].get("pythonVersion")))
        rebuilt = json.loads(attestation(str(out), "provenance"))
    if result.digest == digest:
        return Verification(digest, result.digest, ())
    differences = checks.changed_layers(provenance.layers_of(document), provenance.layers_of(rebuilt))
    lock = {i.kind: i.digest for i in provenance.inputs_of(rebuilt)}.get(DEPENDENCY_LOCK)
    recorded_lock = next((i.digest for i in inputs if i.kind == DEPENDENCY_LOCK), None)
    if lock != recorded_lock:
        differences.insert(0, checks.Difference("dependency lock (resolved again)", recorded_lock or "none",
                                                lock or "none"))
    recorded_host = document["predicate"]["buildDefinition"]["internalParameters"].get("buildHostFamily")
    here = rebuilt["predicate"]["buildDefinition"]["internalParameters"].get("buildHostFamily")
    if recorded_host != here:
        differences.append(checks.Difference("build host (layer compression differs between host families)",
                                             str(recorded_host), str(here)))
    return Verification(digest, result.digest, tuple(str(d) for d in differences) or
                        (f"image: recorded {digest}, rebuilt {result.digest}",))
