"""fpga quantize / evaluate / report through the CLI, on the digits CNN sample (a real CNN trained on scikit-learn's
digits) and its held-out data; the invariant checker against models quantized the ways a DPU does not take."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgepack.errors import CalibrationDataError
from fpga import invariants
from fpga.evaluate import paired_difference, wilson
from fpga.profile import load_profile
from tests.project import run_cli

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "digits-cnn"
MODEL = SAMPLE / "model" / "model.onnx"
CALIBRATION = SAMPLE / "data" / "calibration.npy"
TEST, LABELS = SAMPLE / "data" / "test.npy", SAMPLE / "data" / "test-labels.npy"


def _models(capsys) -> list[str]:
    code, out, err = run_cli(["model", "list"], capsys)
    assert code == 0, err
    return [line.split("\t")[0] for line in out.splitlines()]


@pytest.fixture
def quantized(edgepack_home, capsys):
    """cnn:1 (float) registered and cnn:2 quantized from it for the default profile."""
    assert run_cli(["model", "register", "cnn", str(MODEL)], capsys)[0] == 0
    code, out, err = run_cli(["fpga", "quantize", "--model", "cnn:1", "--calibration", str(CALIBRATION)], capsys)
    assert code == 0, err
    assert out.strip() == "cnn:2"
    return edgepack_home


def _scales(model: onnx.ModelProto) -> list[np.ndarray]:
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [constants[n.input[1]] for n in model.graph.node if n.op_type in invariants.QDQ_OPS]


def test_quantized_model_is_dpu_shaped_and_records_its_source(quantized, capsys):
    code, out, err = run_cli(["model", "show", "cnn:2"], capsys)
    assert code == 0, err
    shown = json.loads(out)
    tags = shown["tags"]
    assert tags["edgepack.fpga.source"] == "cnn:1" and tags["edgepack.fpga.profile"] == "kv260-dpuczdx8g"
    assert tags["edgepack.fpga.calibration_samples"] == "269" and len(tags["edgepack.fpga.calibration_sha256"]) == 64
    model = onnx.load(str(quantized / "models" / "cnn" / "2" / "files" / "model.onnx"))
    scales = _scales(model)
    assert len(scales) >= 20
    for scale in scales:
        assert scale.size == 1  # per tensor
        mantissa, _ = np.frexp(scale.astype(np.float64))
        assert np.all(mantissa == 0.5), scale  # a power of two
    zero_points = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("zero_point")]
    assert zero_points and all(np.all(z == 0) for z in zero_points)
    assert {z.dtype for z in zero_points} <= {np.dtype(np.int8), np.dtype(np.int32)}
    assert invariants.problems(model, load_profile("kv260-dpuczdx8g")) == []
    assert MODEL.stat().st_size / (quantized / "models" / "cnn" / "2" / "files" / "model.onnx").stat().st_size > 3


def test_evaluation_on_held_out_data_passes_the_gate_with_intervals(quantized, capsys):
    code, out, err = run_cli(["fpga", "evaluate", "--model", "cnn:1", "--quantized", "cnn:2", "--data", str(TEST),
                              "--labels", str(LABELS), "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["samples"] == 450 and result["passed"] is True
    reference, accelerated = result["artifacts"]
    assert reference["accuracy"] > 0.98 and accelerated["accuracy"] > 0.98
    assert abs(accelerated["delta"]) <= 0.01
    low, high = accelerated["delta_interval"]
    assert low <= accelerated["delta"] <= high and high - low < 0.05
    assert accelerated["agreement"] > 0.98 and 0 < accelerated["max_abs_diff"] < 0.5
    assert accelerated["size_bytes"] < reference["size_bytes"] / 3
    assert reference["latency_ms"]["batch1"] > 0 and accelerated["latency_ms"]["batch32"] > 0


def test_a_model_that_loses_accuracy_fails_the_gate(quantized, tmp_path, capsys):
    model = onnx.load(str(MODEL))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.ndim == 4:  # conv weights: noise as large as the weights themselves
            init.CopyFrom(numpy_helper.from_array(array + rng.normal(0, array.std(), array.shape).astype(np.float32),
                                                  init.name))
    broken = tmp_path / "model.onnx"
    onnx.save(model, str(broken))
    assert run_cli(["model", "register", "noisy", str(broken)], capsys)[0] == 0
    code, out, err = run_cli(["fpga", "evaluate", "--model", "cnn:1", "--quantized", "noisy:1", "--data", str(TEST),
                              "--labels", str(LABELS), "--max-drop", "0.01"], capsys)
    assert code == 3, out + err
    assert "gate: FAILED" in out and "more than --max-drop 0.01" in out


def test_the_cpu_fallback_is_evaluated_too(quantized, capsys):
    code, out, err = run_cli(["fpga", "quantize", "--model", "cnn:1", "--calibration", str(CALIBRATION), "--cpu"],
                             capsys)
    assert code == 0 and out.strip() == "cnn:3", err
    code, out, err = run_cli(["fpga", "evaluate", "--model", "cnn:1", "--quantized", "cnn:2", "--cpu-model", "cnn:3",
                              "--data", str(TEST), "--labels", str(LABELS), "--json"], capsys)
    assert code == 0, err
    roles = {row["role"]: row for row in json.loads(out)["artifacts"]}
    assert set(roles) == {"reference", "accelerator", "cpu-fallback"}
    assert roles["cpu-fallback"]["agreement"] > 0.98
    # a u8s8 fallback is not what the DPU takes: asymmetric uint8 activations
    cpu = onnx.load(str(quantized / "models" / "cnn" / "3" / "files" / "model.onnx"))
    assert any("zero point" in p or "uint8" in p for p in invariants.problems(cpu, load_profile(None)))


def test_report_places_nodes_and_counts_flops_and_subgraphs(quantized, capsys):
    code, out, err = run_cli(["fpga", "report", "--model", "cnn:2", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["estimate"] is True and report["verified_on_hardware"] is False
    assert report["sources"] and all(s["url"].startswith("https://") for s in report["sources"])
    summary = report["summary"]
    assert (summary["nodes"], summary["on_accelerator"], summary["accelerator_subgraphs"]) == (11, 10, 1)
    softmax = next(n for n in report["nodes"] if n["op"] == "Softmax")
    assert not softmax["on_accelerator"] and "PG338" in softmax["reason"]
    convs = [n for n in report["nodes"] if n["op"] == "Conv"]
    assert [c["flops"] for c in convs] == [2 * 32 * 8 * 8 * 1 * 9, 2 * 64 * 8 * 8 * 32 * 9, 2 * 128 * 4 * 4 * 64 * 9]
    assert 0.999 < summary["accelerator_flops_share"] < 1.0
    code, out, err = run_cli(["fpga", "report", "--model", "cnn:2", "--profile", "ve2-vaiml", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["summary"]["on_accelerator"] == 11
    code, out, err = run_cli(["fpga", "report", "--model", "cnn:2"], capsys)
    assert code == 0 and "ESTIMATE" in out and "10/11 nodes" in out


def test_a_float_model_is_refused_for_the_accelerator(quantized, capsys):
    code, out, err = run_cli(["fpga", "report", "--model", "cnn:1"], capsys)
    assert code == 1 and "not quantized" in err and "fpga quantize" in err and "Traceback" not in err


def test_invariants_catch_qoperator_nodes_and_missing_or_computed_zero_points(quantized, tmp_path):
    from onnxruntime.quantization import QuantFormat

    profile = load_profile("kv260-dpuczdx8g")
    found = invariants.problems(_quantize_plain(tmp_path, per_channel=False, fmt=QuantFormat.QOperator), profile)
    assert any("a QOperator node" in p and "QLinearConv" in p for p in found)
    model = onnx.load(str(quantized / "models" / "cnn" / "2" / "files" / "model.onnx"))
    first_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    del first_q.input[2]  # no zero point: uint8 by ONNX's default
    found = invariants.problems(model, profile)
    assert found == [f"{first_q.name} (QuantizeLinear): uint8 quantization (no zero point); "
                     "kv260-dpuczdx8g takes int8"]


def _quantize_plain(tmp_path: Path, *, per_channel: bool, fmt=None) -> onnx.ModelProto:
    """The sample quantized by onnxruntime's own defaults: symmetric, but with computed (not power-of-two)
    scales, and per-channel weights when asked."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    data = np.load(CALIBRATION)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": data[i:i + 64]} for i in range(0, len(data), 64)])

        def get_next(self):
            return next(self.batches, None)

    out = tmp_path / f"plain-{per_channel}-{fmt}.onnx"
    quantize_static(MODEL, out, Reader(), quant_format=fmt or QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    return onnx.load(str(out))


def test_invariants_catch_scales_that_are_not_powers_of_two_and_per_channel_axes(tmp_path):
    profile = load_profile("kv260-dpuczdx8g")
    found = invariants.problems(_quantize_plain(tmp_path, per_channel=False), profile)
    assert any("is not a power of two" in p for p in found)
    assert all(p.split(" (")[0] for p in found)  # each names its node
    assert any(p.startswith("input_QuantizeLinear") or "QuantizeLinear" in p for p in found)
    found = invariants.problems(_quantize_plain(tmp_path, per_channel=True), profile)
    per_channel = [p for p in found if "per-channel scales" in p]
    assert per_channel and "along axis 0" in per_channel[0] and "one scale per tensor" in per_channel[0]


def test_packaging_refuses_a_model_that_breaks_the_invariants(edgepack_home, tmp_path, capsys):
    plain = tmp_path / "model.onnx"
    onnx.save(_quantize_plain(tmp_path, per_channel=True), str(plain))
    assert run_cli(["model", "register", "plain", str(plain)], capsys)[0] == 0
    assert run_cli(["model", "register", "cnn", str(MODEL)], capsys)[0] == 0
    code, out, err = run_cli(["plan", "--model", "plain:1", "--target", "fpga", "--cpu-model", "cnn:1",
                              "--inference-config", str(SAMPLE / "inferenceconfig.json")], capsys)
    assert code == 1, out
    assert "does not fit the accelerator" in err and "per-channel scales" in err and "not a power of two" in err


@pytest.mark.parametrize("case", ["missing", "empty-dir", "wrong-shape", "wrong-dtype", "not-numpy", "profile"])
def test_bad_calibration_or_profile_is_named_and_registers_nothing(case, edgepack_home, tmp_path, capsys):
    assert run_cli(["model", "register", "cnn", str(MODEL)], capsys)[0] == 0
    data, extra = tmp_path / "data.npy", []
    expected = {"missing": "no such file or directory", "empty-dir": "no .npy or .npz files",
                "wrong-shape": "has shape Nx1x8x8 but the data is 10x64",
                "wrong-dtype": "is float32 but the data is float64", "not-numpy": "not a .npy or .npz file",
                "profile": "choosing accelerator profile 'nope': no such profile"}[case]
    if case == "empty-dir":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "wrong-shape":
        np.save(data, np.zeros((10, 64), np.float32))
    elif case == "wrong-dtype":
        np.save(data, np.load(CALIBRATION).astype(np.float64))
    elif case == "not-numpy":
        data = tmp_path / "data.csv"
        data.write_text("1,2,3\n")
    elif case == "profile":
        data, extra = CALIBRATION, ["--profile", "nope"]
    code, out, err = run_cli(["fpga", "quantize", "--model", "cnn:1", "--calibration", str(data), *extra], capsys)
    assert code == 1, out
    assert expected in err and "hint:" in err and "Traceback" not in err
    assert _models(capsys) == ["cnn:1"]


def test_labels_that_do_not_match_and_a_model_that_is_not_onnx(quantized, tmp_path, capsys):
    short = tmp_path / "labels.npy"
    np.save(short, np.load(LABELS)[:400])
    code, out, err = run_cli(["fpga", "evaluate", "--model", "cnn:1", "--quantized", "cnn:2", "--data", str(TEST),
                              "--labels", str(short)], capsys)
    assert code == 1 and "400 labels for 450 samples" in err
    code, out, err = run_cli(["fpga", "evaluate", "--model", "cnn:1", "--quantized", "cnn:2", "--data", str(TEST)],
                             capsys)
    assert code == 1 and "no labels" in err and "--labels" in err
    folder = tmp_path / "sk"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(b"\x80\x04not onnx")
    assert run_cli(["model", "register", "sk", str(folder)], capsys)[0] == 0
    code, out, err = run_cli(["fpga", "quantize", "--model", "sk:1", "--calibration", str(CALIBRATION)], capsys)
    assert code == 1 and "holds 0 ONNX files" in err and "Traceback" not in err
    assert _models(capsys) == ["cnn:1", "cnn:2", "sk:1"]


def test_a_one_sample_difference_is_inside_the_interval():
    reference = np.array([True] * 448 + [False] * 2)
    test = reference.copy()
    test[0] = False  # one sample lost: 447 of 450
    delta, low, high = paired_difference(test, reference)
    assert delta == pytest.approx(-1 / 450)
    assert low < delta < 0 < high  # noise: the interval holds 0
    assert wilson(448, 450) == pytest.approx((0.984, 0.9988), abs=1e-3)
    with pytest.raises(CalibrationDataError):
        from fpga.data import load_labels

        load_labels(LABELS, 449)


def _requests(path: Path, *, label: bool = True, rows: int = 5) -> Path:
    images, labels = np.load(TEST)[:, 0] * 16, np.load(LABELS)
    with path.open("w") as f:
        for at in range(0, len(labels), rows):
            body = {"data": images[at:at + rows].round().tolist()}  # the 0..16 values the entry script takes
            if label:
                body["label"] = labels[at:at + rows].tolist()
            f.write(json.dumps(body) + "\n")
    return path


def test_request_bodies_are_read_through_the_entry_script(quantized, tmp_path, capsys):
    config = str(SAMPLE / "inferenceconfig.json")
    requests = _requests(tmp_path / "requests.jsonl")
    code, out, err = run_cli(["fpga", "evaluate", "--model", "cnn:1", "--quantized", "cnn:2", "--data",
                              str(requests), "--label-field", "label", "--inference-config", config, "--json"], capsys)
    assert code == 0, err
    from_requests = json.loads(out)
    code, out, err = run_cli(["fpga", "evaluate", "--model", "cnn:1", "--quantized", "cnn:2", "--data", str(TEST),
                              "--labels", str(LABELS), "--json"], capsys)
    from_arrays = json.loads(out)
    assert from_requests["samples"] == 450
    assert [a["accuracy"] for a in from_requests["artifacts"]] == [a["accuracy"] for a in from_arrays["artifacts"]]
    code, out, err = run_cli(["fpga", "quantize", "--model", "cnn:1", "--calibration", str(requests),
                              "--inference-config", config, "--samples", "100"], capsys)
    assert code == 0 and out.strip() == "cnn:3", err
    assert "on 100 samples" in err
    code, out, err = run_cli(["fpga", "evaluate", "--model", "cnn:1", "--quantized", "cnn:2", "--data",
                              str(_requests(tmp_path / "bare.jsonl", label=False)), "--label-field", "label",
                              "--inference-config", config], capsys)
    assert code == 1 and "line 1 has no 'label' field" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"data": "not images"}) + "\n")
    code, out, err = run_cli(["fpga", "quantize", "--model", "cnn:1", "--calibration", str(bad),
                              "--inference-config", config], capsys)
    assert code == 1 and "request 1: the entry script answered 400" in err and "input schema" in err
    assert "Traceback" not in err
    code, out, err = run_cli(["fpga", "quantize", "--model", "cnn:1", "--calibration", str(requests)], capsys)
    assert code == 1 and "--inference-config" in err
    assert _models(capsys) == ["cnn:1", "cnn:2", "cnn:3"]
