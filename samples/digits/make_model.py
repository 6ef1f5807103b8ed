"""Train the bundled sample: scikit-learn's digits (shipped with scikit-learn, no download) -> ONNX.

    python3 samples/digits/make_model.py     # rewrites samples/digits/model/model.onnx and the samples

A logistic regression on 8x8 images (64 float features, values 0-16), exported with skl2onnx with plain
tensor outputs (label, probabilities), so onnxruntime needs nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

HERE = Path(__file__).resolve().parent


def main() -> None:
    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target
    model = LogisticRegression(max_iter=2000, random_state=0).fit(x[:1500], y[:1500])
    print(f"held-out accuracy: {model.score(x[1500:], y[1500:]):.3f}")
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset=17,
                  initial_types=None)
    onx.graph.input[0].name = "input"
    for node in onx.graph.node:
        node.input[:] = ["input" if name == "X" else name for name in node.input]
    (HERE / "model").mkdir(exist_ok=True)
    (HERE / "model" / "model.onnx").write_bytes(onx.SerializeToString())
    rows = x[1500:1503].tolist()
    (HERE / "sample-request.json").write_text(json.dumps({"data": rows}) + "\n")
    print(f"wrote {HERE / 'model' / 'model.onnx'}; sample labels {y[1500:1503].tolist()}")


if __name__ == "__main__":
    main()
