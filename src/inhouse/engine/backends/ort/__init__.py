"""ONNX Runtime, for the embedding model's int8 matrix kernels (``embed.py`` is the only module importing it)."""
