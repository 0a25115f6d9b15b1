"""Response bodies of the main routes, as the OpenAPI schema documents them (``/openapi.json``).

Documentation only: routes still build their answers from the cores' ``to_dict()``, and FastAPI does not
re-validate them (``responses={200: {"model": …}}``, never ``response_model``). What keeps these honest is the
schema-driven fuzzer (``tests/e2e/test_fuzz.py``): it checks every answer it gets against its documented schema.
Fields the routes always send are required; objects allow more fields (additions are not breaking changes).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- errors ----------------------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str
    type: str
    code: str
    param: str | None


class ErrorResponse(BaseModel):
    """The one error shape (OpenAI's), whatever the status."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


class Deleted(_Out):
    id: str
    object: str
    deleted: Literal[True]


# -- the OpenAI-compatible routes ------------------------------------------------------------------------------


class Usage(_Out):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatMessageOut(_Out):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(_Out):
    index: int
    message: ChatMessageOut
    finish_reason: str | None


class Citation(_Out):
    index: int
    chunk_id: str
    document_id: str
    title: str


class ChatCompletion(_Out):
    """``chat.completion``; ``citations`` with the ``knowledge`` extension, ``inhouse`` when the egress policy
    routed the request. With ``stream: true`` the answer is ``text/event-stream`` of ``chat.completion.chunk``."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    citations: list[Citation] | None = None
    inhouse: dict[str, Any] | None = None


class CompletionChoice(_Out):
    index: int
    text: str
    finish_reason: str | None


class Completion(_Out):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


# -- identity --------------------------------------------------------------------------------------------------


class User(_Out):
    id: str
    object: Literal["user"]
    name: str
    display_name: str
    role: Literal["admin", "member"]
    disabled: bool
    created_at: float


class UserWithGroups(User):
    groups: list[str]


class UserList(_Out):
    object: Literal["list"]
    data: list[User]


class Member(_Out):
    id: str
    name: str


class Group(_Out):
    id: str
    object: Literal["group"]
    name: str
    created_at: float


class GroupWithMembers(Group):
    members: list[Member]


class GroupList(_Out):
    object: Literal["list"]
    data: list[Group]


class ApiKey(_Out):
    """An API key's public view: never its secret or hash."""

    id: str
    object: Literal["api_key"]
    name: str
    prefix: str
    role: Literal["admin", "member"]
    user_id: str | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None
    rpm_limit: int | None
    tokens_per_day_limit: int | None
    scopes: list[str] | None


class NewApiKey(ApiKey):
    secret: str  # shown once


class ApiKeyList(_Out):
    object: Literal["list"]
    data: list[ApiKey]


class Me(_Out):
    object: Literal["actor"]
    key_id: str
    role: Literal["admin", "member"]
    user: User | dict[str, Any] | None
    groups: list[str]
    key: ApiKey | None
    quota: dict[str, Any]


# -- knowledge -------------------------------------------------------------------------------------------------


class AccessList(_Out):
    groups: list[str]
    keys: list[str]


class Collection(_Out):
    id: str
    object: Literal["collection"]
    name: str
    description: str
    access: AccessList
    created_at: float
    document_count: int
    sketch_questions: bool


class CollectionList(_Out):
    object: Literal["list"]
    data: list[Collection]


class Document(_Out):
    id: str
    object: Literal["document"]
    collection_id: str
    filename: str
    title: str
    mime: str
    sha256: str
    label: str
    access: AccessList | None
    metadata: dict[str, str]
    version: int
    created_at: float
    size_bytes: int
    chunk_count: int


class RaisedCopy(_Out):
    id: str
    collection_id: str
    label: str  # what it was raised to
    label_before: str
    derived_from: str  # the document its text was taken from
    reason: str


class RelabelledDocument(Document):
    # Documents raised with this one because their text was taken from it (those the caller may see; every one
    # is named in the audit record).
    raised_copies: list[RaisedCopy]


class UploadedDocument(Document):
    status: str  # added, replaced or unchanged


class DocumentList(_Out):
    object: Literal["list"]
    data: list[Document]


class SearchHit(_Out):
    chunk_id: str
    document_id: str
    collection_id: str
    title: str
    label: str
    score: float
    similarity: float | None
    text: str


class SearchResults(_Out):
    object: Literal["list"]
    data: list[SearchHit]


# -- audit -----------------------------------------------------------------------------------------------------


class AuditRecord(_Out):
    seq: int
    kind: str
    action: str
    outcome: str


class AuditList(_Out):
    object: Literal["list"]
    data: list[AuditRecord]
    next_after_seq: int | None


# -- conversations ---------------------------------------------------------------------------------------------


class ConversationSummary(_Out):
    id: str
    object: Literal["conversation"]
    title: str


class Conversation(ConversationSummary):
    messages: list[dict[str, Any]]


class ConversationList(_Out):
    object: Literal["list"]
    data: list[ConversationSummary]
