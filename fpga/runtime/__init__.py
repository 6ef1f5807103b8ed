"""The in-image part of an FPGA image: execution-provider selection and its check (stdlib, onnxruntime and
``edgepack.runtime`` only)."""
