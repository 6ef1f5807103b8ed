"""Registered models: the ModelArtifact value, ONNX inspection, and the local directory store."""
