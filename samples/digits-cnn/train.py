"""Train the digits-cnn sample: a small CNN on scikit-learn's bundled digits (no download) -> ONNX.

Needs (in any Python environment, not edgepack's own):

    pip install torch==2.13.0 scikit-learn onnx onnxruntime numpy

Run:

    python samples/digits-cnn/train.py

Writes, next to this file:

    model/model.onnx          opset 17; input "input" float32 [N, 1, 8, 8] (pixel values / 16, i.e. 0..1),
                              output "probabilities" float32 [N, 10] (Softmax is part of the graph)
    data/calibration.npy      269 x 1 x 8 x 8 float32 calibration samples (not used for training)
    data/test.npy             450 x 1 x 8 x 8 float32 held-out test samples
    data/test-labels.npy      450 int64 class ids of data/test.npy
    sample-request.json       three test images as 8x8 lists of raw 0..16 values, {"data": [...]}
    inferenceconfig.json      Azure ML inference config whose inputSample/outputSample are real model I/O

Split (stratified, random_state=0): 450 test, then 269 calibration from the rest, 1,078 for training.
Training is seeded, single-threaded and deterministic; the FP32 test accuracy printed is computed with
onnxruntime on the exported ONNX file, not with torch.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
EPOCHS = 80
BATCH = 64
LR = 1e-3


def build_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 10),
        nn.Softmax(dim=1),
    )


def split():
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    index = np.arange(len(y))
    rest, test = train_test_split(index, test_size=450, stratify=y, random_state=0)
    train, calib = train_test_split(rest, test_size=269, stratify=y[rest], random_state=0)
    return digits, x, y, train, calib, test


def train(model: nn.Sequential, x: np.ndarray, y: np.ndarray) -> float:
    logits_net = model[:-1]  # everything but the Softmax: CrossEntropyLoss wants logits
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    model.train()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(yt), generator=generator)
        total = 0.0
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            optimizer.zero_grad()
            loss = loss_fn(logits_net(xt[batch]), yt[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  train loss {total / len(yt):.4f}")
    model.eval()
    return time.perf_counter() - started


def export(model: nn.Sequential, path: Path) -> None:
    buffer = io.BytesIO()
    kwargs = dict(input_names=["input"], output_names=["probabilities"], opset_version=17,
                  dynamic_axes={"input": {0: "N"}, "probabilities": {0: "N"}}, do_constant_folding=True)
    # The TorchScript exporter: needs neither onnxscript nor the dynamo exporter.
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), buffer, dynamo=False, **kwargs)
    proto = onnx.load_from_string(buffer.getvalue())
    proto.doc_string = ""
    proto.graph.doc_string = ""
    for node in proto.graph.node:
        node.doc_string = ""
    onnx.checker.check_model(proto, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    digits, x, y, train_idx, calib_idx, test_idx = split()
    print(f"train {len(train_idx)}, calibration {len(calib_idx)}, test {len(test_idx)}")

    model = build_model()
    seconds = train(model, x[train_idx], y[train_idx])
    print(f"training took {seconds:.1f} s ({EPOCHS} epochs, batch {BATCH}, Adam lr {LR})")

    model_path = HERE / "model" / "model.onnx"
    export(model, model_path)

    data = HERE / "data"
    data.mkdir(exist_ok=True)
    np.save(data / "calibration.npy", x[calib_idx])
    np.save(data / "test.npy", x[test_idx])
    np.save(data / "test-labels.npy", y[test_idx])

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"input": x[test_idx]})
    accuracy = float((probabilities.argmax(axis=1) == y[test_idx]).mean())
    print(f"FP32 test accuracy (onnxruntime {ort.__version__}): {accuracy:.4f} "
          f"({int((probabilities.argmax(axis=1) == y[test_idx]).sum())}/{len(test_idx)})")

    # Requests in the score.py form: raw 0..16 pixel values, 8x8 per image; score.py divides by 16.
    raw = digits.images
    sample = test_idx[:3]
    (HERE / "sample-request.json").write_text(json.dumps({"data": raw[sample].tolist()}) + "\n")
    two = test_idx[:2]
    (probs_two,) = session.run(None, {"input": (raw[two] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)})
    config = {
        "entryScript": "score.py",
        "sourceDirectory": "src",
        "runtime": "python",
        "requirementsFile": "requirements.txt",
        "inputSample": {"data": raw[two].tolist()},
        "outputSample": {"predictions": probs_two.argmax(axis=1).tolist(),
                         "probabilities": np.round(probs_two.astype(np.float64), 6).tolist()},
    }
    (HERE / "inferenceconfig.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"sample-request.json labels {y[sample].tolist()}, predicted "
          f"{probabilities[:3].argmax(axis=1).tolist()}")

    for path in (model_path, data / "calibration.npy", data / "test.npy", data / "test-labels.npy",
                 HERE / "sample-request.json", HERE / "inferenceconfig.json"):
        print(f"{path.relative_to(HERE)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
