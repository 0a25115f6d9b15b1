"""The numbers a request may carry: what the storage and the engine can hold.

SQLite stores an integer as a signed 64-bit value (so does PostgreSQL's ``bigint``): a larger one raises
``OverflowError`` deep inside a query, a 500. Every integer of a request (body, query, path) is declared with a
range, so it is refused at the edge with a 400 in the one error shape; a meta-test walks the OpenAPI schema and
fails on an integer without ``minimum`` and ``maximum`` inside these limits. Times are Unix seconds the
``datetime`` module can still represent, and never NaN or infinite.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1  # SQLite INTEGER, PostgreSQL bigint
MAX_INT32 = 2**31 - 1  # llama.cpp's int32_t parameters (top_k, token ids)
MAX_UINT32 = 2**32 - 1  # llama.cpp's sampler seed
MAX_UNIX_S = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last second datetime can represent

# A count, a limit or an offset that is stored or handed to a query.
Count = Annotated[int, Field(ge=0, le=MAX_INT64)]
PositiveCount = Annotated[int, Field(ge=1, le=MAX_INT64)]
# A point in time as Unix seconds (expiry of a key).
UnixSeconds = Annotated[float, Field(ge=0.0, le=MAX_UNIX_S, allow_inf_nan=False)]
