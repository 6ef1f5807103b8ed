"""The in-image provider choice, with the real onnxruntime: what runs, why, and the silent fallback caught."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgepack.runtime.settings import AcceleratorSettings, ModelEntry, RuntimeConfig, RuntimeSetupError
from fpga.runtime import provider

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "digits-cnn"
VITIS = "VitisAIExecutionProvider"


@pytest.fixture
def image(tmp_path, monkeypatch):
    """An FPGA image's folders: cnn:2 (the accelerator's QDQ model) and cnn:1 (the FP32 fallback)."""
    from fpga.data import input_specs, load_inputs
    from fpga.profile import load_profile
    from fpga.quantize import quantize

    monkeypatch.setattr(ort, "InferenceSession", ort.InferenceSession)  # install() replaces it: undo after
    cpu, accelerated = tmp_path / "azureml-models" / "cnn" / "1", tmp_path / "azureml-models" / "cnn" / "2"
    cpu.mkdir(parents=True)
    accelerated.mkdir(parents=True)
    shutil.copyfile(SAMPLE / "model" / "model.onnx", cpu / "model.onnx")
    specs = input_specs(ort.InferenceSession(str(cpu / "model.onnx"), providers=["CPUExecutionProvider"]))
    quantize(cpu / "model.onnx", accelerated / "model.onnx",
             load_inputs(SAMPLE / "data" / "calibration.npy", specs), load_profile(None))
    vaip = tmp_path / "vaip_config.json"
    vaip.write_text("{}")
    settings = AcceleratorSettings(profile="kv260-dpuczdx8g", provider=VITIS, model={"name": "cnn", "version": 2},
                                   cpu_model={"name": "cnn", "version": 1}, config_file=str(vaip),
                                   provider_options={"cache_dir": str(tmp_path / "cache"), "cache_key": "k"},
                                   report=str(tmp_path / "report.json"))
    config = RuntimeConfig(entry_script="score.py", source_dir=str(tmp_path), app_root=str(tmp_path),
                           target="fpga", accelerator=settings).with_models(
        (ModelEntry("cnn", 1, "a" * 64, str(cpu)), ModelEntry("cnn", 2, "b" * 64, str(accelerated))))
    return config


def _score(session) -> np.ndarray:
    return session.run(None, {"input": np.load(SAMPLE / "data" / "test.npy")[:16]})[0]


def test_a_provider_onnxruntime_ignores_with_only_a_warning_is_caught(image, monkeypatch, caplog):
    # onnxruntime claims the provider, as a build that lists it but cannot take this model would
    monkeypatch.setattr(ort, "get_available_providers", lambda: [VITIS, "CPUExecutionProvider"])
    config, details = provider.prepare(image)
    assert config.model_dir.endswith("cnn/2") and details["execution"]()["accelerated"] is True
    with caplog.at_level(logging.INFO, logger="edgepack.fpga"):
        with pytest.warns(UserWarning, match=VITIS):  # all onnxruntime itself says
            session = ort.InferenceSession(f"{config.model_dir}/model.onnx")
    execution = details["execution"]()
    assert execution["accelerated"] is False and execution["provider"] == "CPUExecutionProvider"
    assert "did not place the model on VitisAIExecutionProvider" in execution["reason"]
    assert execution["model_file"].endswith("cnn/1/model.onnx") and execution["session_providers"] == [
        "CPUExecutionProvider"]
    # the session really is the FP32 fallback's, not the DPU-shaped model running on the CPU
    fp32 = ort.InferenceSession(str(SAMPLE / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(_score(session), _score(fp32))
    lines = [r for r in caplog.records if r.name == "edgepack.fpga"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    again = ort.InferenceSession(f"{config.model_dir}/model.onnx")  # later sessions go straight to the fallback
    np.testing.assert_array_equal(_score(again), _score(fp32))
    assert "execution provider=CPUExecutionProvider" in lines[0].getMessage()
    assert "accelerator NOT used" in lines[0].getMessage()


def test_a_build_without_the_provider_serves_the_cpu_artifact(image, caplog):
    config, details = provider.prepare(image)
    assert config.model_dir.endswith("cnn/1") and config.model == {"name": "cnn", "version": 1, "sha256": "a" * 64}
    execution = details["execution"]()
    assert execution["reason"].startswith(f"{VITIS} not in this onnxruntime build (available=[")
    with caplog.at_level(logging.INFO, logger="edgepack.fpga"):
        session = ort.InferenceSession(f"{config.model_dir}/model.onnx", providers=[VITIS])  # no warning: replaced
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert details["execution"]()["model_file"].endswith("cnn/1/model.onnx")
    assert "accelerator NOT used: VitisAIExecutionProvider not in this onnxruntime build" in caplog.text


def test_the_choice_follows_edgepack_ep_and_the_config_file(image, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [VITIS, "CPUExecutionProvider"])
    available = [VITIS, "CPUExecutionProvider"]
    settings = image.accelerator
    chosen = provider.choose(settings, image, available=available, mode="auto")
    assert chosen.accelerated and chosen.options["config_file"] == settings.config_file
    assert chosen.options["cache_key"] == "k"
    forced = provider.choose(settings, image, available=available, mode="cpu")
    assert not forced.accelerated and forced.reason == "EDGEPACK_EP=cpu forces the CPU"
    Path(settings.config_file).unlink()
    missing = provider.choose(settings, image, available=available, mode="auto")
    assert not missing.accelerated and "configuration" in missing.reason and "is missing" in missing.reason
    with pytest.raises(RuntimeSetupError, match="EDGEPACK_EP=accelerator, but the accelerator cannot be used"):
        provider.choose(settings, image, available=available, mode="accelerator")
    with pytest.raises(RuntimeSetupError, match="expected one of auto, cpu, accelerator"):
        provider.choose(settings, image, available=available, mode="gpu")
    monkeypatch.setenv("EDGEPACK_EP", "cpu")
    config, details = provider.prepare(image)
    assert config.model_dir.endswith("cnn/1") and "forces the CPU" in details["execution"]()["reason"]


def test_sessions_on_other_files_are_left_alone(image, tmp_path):
    provider.prepare(image)
    other = tmp_path / "other.onnx"
    shutil.copyfile(SAMPLE / "model" / "model.onnx", other)
    session = ort.InferenceSession(str(other), providers=["CPUExecutionProvider"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert _score(session).shape == (16, 10)


def test_accelerator_mode_refuses_a_session_the_accelerator_did_not_take(image, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [VITIS, "CPUExecutionProvider"])
    monkeypatch.setenv("EDGEPACK_EP", "accelerator")
    config, details = provider.prepare(image)
    with pytest.warns(UserWarning, match=VITIS):
        with pytest.raises(RuntimeSetupError, match="EDGEPACK_EP=accelerator, but onnxruntime did not place"):
            ort.InferenceSession(f"{config.model_dir}/model.onnx")
