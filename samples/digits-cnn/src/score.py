"""Azure ML entry script for the digits-cnn sample (an 8x8 digit classifier in ONNX).

Request:  {"data": [...]} with N images, each 8x8 (N x 8 x 8) or a 64-value row (N x 64), pixel values 0..16
          as in scikit-learn's digits images.
Response: {"predictions": [N class ids], "probabilities": [N lists of 10, rounded to 6 decimals]}
"""

import json
import os

import numpy as np
import onnxruntime

session = None
input_name = None


def init():
    global session, input_name
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model.onnx")
    session = onnxruntime.InferenceSession(model_path)
    input_name = session.get_inputs()[0].name


def run(raw_data):
    images = np.asarray(json.loads(raw_data)["data"], dtype=np.float32)
    images = (images / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    (probabilities,) = session.run(None, {input_name: images})
    return {
        "predictions": probabilities.argmax(axis=1).tolist(),
        "probabilities": np.round(probabilities.astype(np.float64), 6).tolist(),
    }
