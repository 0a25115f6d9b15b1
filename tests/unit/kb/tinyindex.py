"""Small hand-made indexes for retrieval tests: documents of plain text chunks, embedded by a fake embedder."""

from __future__ import annotations

import hashlib

from inhouse.governance.labels import Label
from inhouse.kb.document import Chunk
from inhouse.kb.index.protocol import NewDocument
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.testing.fake_embedder import FakeEmbedder


def put_texts(store: SqliteIndexStore, collection_id: str, path: str, texts: list[str],
              embedder: FakeEmbedder) -> str:
    """One document at ``path`` whose chunks are ``texts``; returns its id."""
    data = f"{path}:{texts}".encode()
    chunks = [Chunk(index=i, text=t, content=t, token_count=5, kind="paragraph") for i, t in enumerate(texts)]
    return store.put_document(NewDocument(collection_id, path, hashlib.sha256(data).hexdigest(), Label.INTERNAL,
                                          None, path, path, "text/plain", data, chunks,
                                          embedder.embed_passages(texts))).document.id
