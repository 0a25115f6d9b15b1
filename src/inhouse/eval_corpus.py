"""Where the evaluation corpus is, for every evaluation command and benchmark (and the tests that read it).

In order, the first that is given wins:

1. the command's ``--corpus DIR`` option;
2. the ``INHOUSE_EVAL_CORPUS`` environment variable (the corpus root: ``qa.jsonl``, ``meetings/``, …);
3. ``../shared/corpus`` beside the repository checkout this package was imported from.

The repository is found from this module's own location (``<repo>/src/inhouse/eval_corpus.py``, as Python
imported it: an editable install, which is what ``scripts/setup.sh`` makes), never from the current directory,
so a command finds the corpus that belongs to its checkout wherever it is started. A checkout is a directory
holding ``pyproject.toml`` and ``src/inhouse``. An installed wheel has no checkout, so there the option or the
variable is required. A corpus that is named but missing is an ``InvalidRequest`` naming the path that was
tried and how to give another; no default is ever guessed beyond rule 3.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from inhouse.errors import InvalidRequest

ENV_VAR = "INHOUSE_EVAL_CORPUS"


def repository_root() -> Path | None:
    """The checkout this package was imported from, or None when it is not in one (an installed wheel)."""
    root = Path(os.path.abspath(__file__)).parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "src" / "inhouse").is_dir() else None


def default_corpus() -> Path | None:
    """``<repo>/../shared/corpus`` (whether it exists or not), or None outside a checkout."""
    root = repository_root()
    return None if root is None else root.parent / "shared" / "corpus"


def find_eval_corpus(option: Path | str | None = None, *, environ: Mapping[str, str] | None = None) -> Path:
    """The corpus directory by the rules above; ``InvalidRequest`` (code ``corpus_not_found``) when it is absent."""
    env = os.environ if environ is None else environ
    hint = f"Pass --corpus DIR or set {ENV_VAR}."
    if option is not None and str(option) != "":
        path, source = Path(option), "--corpus"
    elif env.get(ENV_VAR):
        path, source = Path(env[ENV_VAR]), ENV_VAR
    else:
        root = repository_root()
        if root is None:
            raise InvalidRequest("No evaluation corpus: inhouse is not running from a repository checkout, so "
                                 f"there is no ../shared/corpus to default to. {hint}", code="corpus_not_found",
                                 param="corpus")
        path, source = root.parent / "shared" / "corpus", f"../shared/corpus beside the repository {root}"
    if not path.is_dir():
        raise InvalidRequest(f"No evaluation corpus at {path} (from {source}). {hint}", code="corpus_not_found",
                             param="corpus")
    return path
