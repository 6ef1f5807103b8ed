"""Entry script for the benchmark CNN: Azure ML's init()/run() contract, plus edgepack's optional run_batch().

run() takes Azure ML's JSON ({"data": [image, ...]}, each image 1x28x28) and is what both servers call for
JSON requests. run_batch() takes a stacked float32 array of binary (.npy) requests; Azure ML's server ignores it.
"""

import json
import os

import numpy as np
import onnxruntime as ort

session = None


def init():
    global session
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.onnx")
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def run(raw_data):
    images = np.array(json.loads(raw_data)["data"], dtype=np.float32)
    return {"logits": session.run(None, {"input": images})[0].tolist()}


def run_batch(images):
    return session.run(None, {"input": images.astype(np.float32, copy=False)})[0]
