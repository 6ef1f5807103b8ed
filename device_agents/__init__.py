"""IoT Edge on-device agent (ModuleClient, outbox, model swap, health): runs inside edge module images.

Like every in-image package it imports only the standard library, numpy, onnxruntime and the device SDK.
"""
