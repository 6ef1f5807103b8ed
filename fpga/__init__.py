"""FPGA support: the build-time quantization/partition report and the in-image execution-provider selection.

The in-image part imports only the standard library, numpy and onnxruntime.
"""
