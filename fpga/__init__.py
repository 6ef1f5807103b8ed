"""FPGA support: quantization, its checks, the partition estimate and the evaluation (build side: these import
onnx and edgepack's errors and never go into an image), and ``fpga.runtime``, the in-image execution-provider
selection (the standard library, onnxruntime and ``edgepack.runtime`` only). Profiles are data, in ``profiles/``.
"""
