"""The FPGA packager: the webservice's image on the profile's vendor base, with two artifacts and the execution
provider chosen at start (``python3 -m fpga.runtime``). Pure apart from reading the models to check them.

Layers: dependencies, runtime + ``fpga.runtime``, source, the CPU fallback model, the quantized model, and a
layer of the accelerator's files (the provider's configuration where the profile brings one, and the partition
estimate as ``report.json``). Both models keep their registered file names, so the unchanged entry script opens
whichever was chosen. Labels name the target, profile and quantization, and say the accelerator is unverified.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import TYPE_CHECKING

from edgepack.config.schema import InferenceConfig
from edgepack.errors import InvalidModel, NotQuantized, PackagingError, QuantizationInvariantError
from edgepack.models.artifact import ModelArtifact
from edgepack.oci.layer import FileEntry, LayerSpec
from edgepack.oci.plan import ImagePlan
from edgepack.packagers import layers
from edgepack.packagers.webservice import APP_ROOT, SOURCE_DEST
from edgepack.runtime.settings import AcceleratorSettings
from edgepack.targets import FpgaTarget
from fpga.profile import Profile, load_profile

if TYPE_CHECKING:  # onnx is slow to import: only FPGA packaging loads it
    import onnx

FPGA_DIR = "/opt/edgepack/fpga"
UNVERIFIED = "accelerator unverified: built and checked without FPGA hardware"
REPORT = f"{FPGA_DIR}/report.json"
CACHE_DIR = "/var/cache/edgepack/vaip"  # where the provider keeps what it compiled (mount a volume to keep it)
# The tags ``fpga quantize`` records on the model it registers.
SOURCE_TAG, PROFILE_TAG, METHOD_TAG, CALIBRATION_TAG = ("edgepack.fpga.source", "edgepack.fpga.profile",
                                                        "edgepack.fpga.method", "edgepack.fpga.calibration_sha256")


def onnx_file(model: ModelArtifact) -> str:
    """The one ONNX file of ``model`` (its path in the model).

    Raises:
        InvalidModel: none, or several.
    """
    names = [f.path for f in model.files if f.path.endswith(".onnx")]
    if len(names) != 1:
        raise InvalidModel(f"using model '{model.ref}' for an accelerator: it holds {len(names)} ONNX files",
                           hint="Register the model with exactly one .onnx file.")
    return names[0]


def check_quantized(model: ModelArtifact, profile: Profile) -> onnx.ModelProto:
    """The quantized model's graph, checked against ``profile``.

    Raises:
        NotQuantized: a float model.
        QuantizationInvariantError: a quantization the accelerator does not take (the nodes are named).
    """
    from fpga import invariants

    graph = invariants.load_model(model.root / onnx_file(model))
    if not invariants.is_quantized(graph):
        raise NotQuantized(f"packaging '{model.ref}' for {profile.accelerator}: the model is not quantized; the "
                           "accelerator runs only quantized nodes",
                           hint=f"Quantize it first: edgepack fpga quantize --model {model.ref} --calibration DATA")
    found = invariants.problems(graph, profile)
    if found:
        raise QuantizationInvariantError(f"packaging '{model.ref}' for '{profile.name}': the quantization does "
                                         "not fit the accelerator", problems=tuple(found),
                                         hint="Quantize the float model with edgepack fpga quantize.")
    return graph


def plan(models: tuple[ModelArtifact, ...], config: InferenceConfig, target: FpgaTarget, *,
         base_image: str | None = None) -> ImagePlan:
    """Plan an FPGA image for ``models`` = (quantized model, CPU fallback)."""
    if len(models) != 2:
        raise PackagingError("packaging for fpga: one quantized model and its CPU fallback are needed",
                             hint="Pass one --model (quantized) and, unless it records its source, --cpu-model.")
    accelerated, cpu = models
    profile = load_profile(target.profile or accelerated.tags.get(PROFILE_TAG))
    graph = check_quantized(accelerated, profile)
    if onnx_file(cpu) != onnx_file(accelerated) or cpu.folder != accelerated.folder:
        raise PackagingError(f"packaging for fpga: '{cpu.ref}' holds {cpu.folder or '.'}/{onnx_file(cpu)} but "
                             f"'{accelerated.ref}' holds {accelerated.folder or '.'}/{onnx_file(accelerated)}",
                             hint="The entry script opens one file name: register both under the same name.")
    if base_image is None and config.base_image is None and profile.base_image is None:
        raise PackagingError(f"packaging for '{profile.name}': the profile names no vendor base image "
                             f"({profile.base_image_note})", hint="Pass --base-image with the board's runtime image.")
    from fpga import partition

    report = partition.estimate(graph, profile)
    vaip = dict(profile.vaip_config)
    document = vaip.pop("document", None)
    config_file = vaip.pop("config_file")
    cache_key = hashlib.sha256(f"{accelerated.sha256}:{json.dumps(profile.vaip_config, sort_keys=True)}".encode()
                               ).hexdigest()[:16]
    settings = AcceleratorSettings(
        profile=profile.name, provider=profile.provider,
        model={"name": accelerated.name, "version": accelerated.version},
        cpu_model={"name": cpu.name, "version": cpu.version}, config_file=config_file,
        provider_options={**{k: str(v) for k, v in vaip.items()}, "cache_dir": CACHE_DIR, "cache_key": cache_key},
        report=REPORT)
    rc = replace(layers.runtime_config((cpu, accelerated), config, target=target.name, app_root=APP_ROOT,
                                       source_dest=SOURCE_DEST, auth_enabled=target.auth), accelerator=settings)
    env = {**layers.common_env(rc, config), "EDGEPACK_PORT": str(target.port), "EDGEPACK_EP": "auto"}
    requirements = layers.requirements(layers.RUNTIME_REQUIREMENTS, config.pip_requirements)
    record = {"estimate": report, "quantization": {"method": accelerated.tags.get(METHOD_TAG, "unknown"),
                                                   "source": accelerated.tags.get(SOURCE_TAG, ""),
                                                   "calibration_sha256": accelerated.tags.get(CALIBRATION_TAG, "")},
              "accelerated_model": accelerated.ref, "cpu_model": cpu.ref}
    files = [FileEntry.from_bytes(REPORT, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())]
    if document is not None:
        files.append(FileEntry.from_bytes(config_file, (json.dumps(document, indent=2) + "\n").encode()))
    app = layers.app_layers((cpu, accelerated), config, rc, requirements=requirements, source_dest=SOURCE_DEST,
                            app_root=APP_ROOT, with_fpga=True)
    labels = layers.image_labels(
        (accelerated, cpu), target.name, port=target.port, auth="key" if target.auth else "none",
        score_path="/score", ready_path="/health",
        accelerator={"profile": profile.name, "accelerator": profile.accelerator, "provider": profile.provider,
                     "quantization": accelerated.tags.get(METHOD_TAG, "unknown"),
                     "accelerated-model": accelerated.ref, "cpu-model": cpu.ref, "status": UNVERIFIED})
    return ImagePlan(
        target=target.name,
        base_image=base_image or config.base_image or profile.base_image or "",
        layers=(*app, LayerSpec("accelerator", tuple(files), comment=f"accelerator files for {profile.name}")),
        env=env,
        entrypoint=("python3", "-m", "fpga.runtime"),
        cmd=None,
        workdir=SOURCE_DEST,
        labels=labels,
        exposed_ports=(target.port,),
        local_command=None,
        port=target.port,
    )
