"""Azure ML-style entry script for the digits sample: unchanged from what Azure ML's packaging expects."""

import json
import os

import numpy as np
import onnxruntime as ort

session = None


def init():
    global session
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.onnx")
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"], dtype=np.float32)
    labels, probabilities = session.run(None, {"input": data})
    return {"predictions": labels.tolist(), "probabilities": np.round(probabilities, 6).tolist()}
