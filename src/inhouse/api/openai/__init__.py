"""The OpenAI-compatible API: ``routes.py`` (thin HTTP routes), ``serving.py`` (the life of a generation request,
top to bottom), ``wire.py`` (OpenAI's JSON and SSE shapes), ``knowledge.py`` (the ``knowledge`` extension:
grounding and citations) and ``relay.py`` (answers of external providers the egress policy chose)."""
