"""ONNX Runtime: the embedding model's int8 matrix kernels (``embed.py``) and the OCR model (``ocr.py``), their
sessions opened one way (``session.py``, with ``embed.available``: the only modules importing ``onnxruntime``)."""
