"""Company knowledge: parsing, chunking, embedding, indexing and retrieval.

Parsing lives in ``kb.parse`` (``parse_file``), chunking in ``kb.chunk`` (``chunk_document``); the shared data types
in ``kb.document``. Heavy parser libraries are imported lazily, so importing this package is cheap.
"""
