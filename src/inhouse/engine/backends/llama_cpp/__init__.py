"""llama.cpp behind inhouse's backend protocol. ``_library`` is the only module importing ``llama_cpp``; what
other packages may know about the installed build is re-exported here (finding it loads nothing)."""

from inhouse.engine.backends.llama_cpp._library import WEIGHT_BUFFERS, BuildIdentity, build_identity

__all__ = ["WEIGHT_BUFFERS", "BuildIdentity", "build_identity"]
