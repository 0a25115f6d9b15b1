"""Rebuild the OpenDocument fixtures here with LibreOffice, the suite that writes these files natively:

    apt-get install libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui
    python tests/unit/kb/data/odf/make_fixtures.py

``policy.fodt`` and ``payroll.fods`` (flat OpenDocument, written by hand; read as they are by the tests too) are the
sources of ``policy.odt`` and ``payroll.ods``. The others are saved from the sources of the Word, Excel and PowerPoint
fixtures (``../legacy/make_fixtures.py``), so the tests can check that a document reads the same whichever suite saved
it. The outputs are committed, so the tests need no LibreOffice.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "legacy"))

import make_fixtures as legacy  # noqa: E402  (the sources beside the legacy fixtures)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        legacy.travel_docx(work / "travel.docx")
        legacy.budget_xlsx(work / "budget.xlsx")
        legacy.board_docx(work / "board.docx")
        legacy.footer_pptx(work / "footer.pptx")
        legacy.watermark_docx(work / "watermark.docx")
        (work / "notes.fodt").write_text(legacy.NOTES_FODT, encoding="utf-8")
        (work / "table-note.fodt").write_text(legacy.TABLE_NOTE_FODT, encoding="utf-8")
        sources = [(work / "travel.docx", "odt"), (work / "budget.xlsx", "ods"), (work / "board.docx", "odt"),
                   (work / "footer.pptx", "odp"), (work / "notes.fodt", "odt"), (work / "table-note.fodt", "odt"),
                   (work / "watermark.docx", "odt"), (HERE / "policy.fodt", "odt"), (HERE / "payroll.fods", "ods")]
        for source, target in sources:
            subprocess.run(["soffice", "--headless", "--convert-to", target, "--outdir", str(HERE), str(source)],
                           check=True, capture_output=True)


if __name__ == "__main__":
    main()
