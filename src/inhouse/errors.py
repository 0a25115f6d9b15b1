"""The one error hierarchy of inhouse.

Cores raise these; only the edges (``api/``, ``cli/``, ``web/``) turn them into HTTP statuses or exit
codes. Each class names the OpenAI-style ``type`` and a stable machine ``code`` it travels with::

    InhouseError
     ├── InvalidRequest             bad input from a caller            (type invalid_request_error)
     │    ├── ContextLengthExceeded  prompt + max_tokens do not fit
     │    ├── InvalidModelFile       GGUF header or chat template refused
     │    └── DocumentRejected       a file that cannot be parsed safely; carries ``filename`` + ``reason``
     ├── AuthenticationFailed       no key, bad key, expired, revoked  (type authentication_error)
     ├── PermissionDenied           authenticated but not allowed      (type permission_error)
     ├── NotFound                   unknown id (also used to hide ids of others)
     │    └── ModelNotFound          a model name that is not registered
     ├── Conflict                   the resource already exists / is in another state
     ├── Overloaded                 queue full or quota exceeded; carries ``retry_after_s``
     ├── Unavailable                the engine is loading, stopping or failed
     │    ├── AuditUnavailable       the audit record could not be written: the action must not happen
     │    └── EngineCrashed          the engine's process died; it is being restarted
     └── EngineFailure              llama.cpp returned an error we could not recover from

This module imports nothing from the package.
"""

from __future__ import annotations


class InhouseError(Exception):
    """Base of every error inhouse raises on purpose."""

    type: str = "server_error"
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param


class InvalidRequest(InhouseError):
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"

    def __init__(self, n_prompt: int, n_ctx: int, *, max_tokens: int = 0) -> None:
        if max_tokens:
            msg = (
                f"This model's context is {n_ctx} tokens, but the prompt has {n_prompt} tokens "
                f"and at least 1 more must be generated (max_tokens={max_tokens})."
            )
        else:
            msg = f"This model's context is {n_ctx} tokens, but the prompt has {n_prompt} tokens."
        super().__init__(msg, param="messages")
        self.n_prompt = n_prompt
        self.n_ctx = n_ctx


class InvalidModelFile(InvalidRequest):
    code = "invalid_model_file"


class DocumentRejected(InvalidRequest):
    """One file refused by a parser (empty, encrypted, too big, zip bomb, unsupported...); the batch goes on."""

    code = "document_rejected"

    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(f"{filename}: {reason}", param="file")
        self.filename = filename
        self.reason = reason


class AuthenticationFailed(InhouseError):
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(InhouseError):
    type = "permission_error"
    code = "permission_denied"


class NotFound(InhouseError):
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, name: str, available: list[str]) -> None:
        listing = ", ".join(sorted(available)) or "none"
        super().__init__(f"The model '{name}' is not registered. Available models: {listing}.", param="model")
        self.name = name
        self.available = sorted(available)


class Conflict(InhouseError):
    type = "invalid_request_error"
    code = "conflict"


class Overloaded(InhouseError):
    type = "rate_limit_error"
    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: float = 1.0, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class Unavailable(InhouseError):
    type = "server_error"
    code = "unavailable"


class AuditUnavailable(Unavailable):
    """The audit log could not record an action (write failed, or the log no longer matches its signed
    head). The action it was meant to record must fail: nothing happens unaudited."""

    code = "audit_unavailable"


class EngineCrashed(Unavailable):
    """The child process running a model's engine died (a signal, e.g. SIGSEGV in native code). In-flight
    requests end with this; the supervisor restarts the engine, so a retry is the right answer."""

    code = "engine_crashed"


class EngineFailure(InhouseError):
    type = "server_error"
    code = "engine_failure"
