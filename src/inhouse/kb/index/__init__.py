"""Index stores: documents, chunks, keyword index and vectors behind ``IndexStore`` (``protocol.py``)."""
