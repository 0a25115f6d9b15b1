"""An e-mail whose text/plain part is empty (or a "view it in a browser" stub) is read from its text/html part.

Before: the plain part was the body whatever it held, so a notification sent with an empty plain part was rejected
("e-mail has no readable text body or attachment") and a stub was all that was indexed.
"""

from __future__ import annotations

from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from inhouse.errors import DocumentRejected
from inhouse.kb.parse import parse_file

HTML = ("<html><body><p>The VPN gateway vpn-sh will be down on Saturday 10:00-12:00 for maintenance.</p>"
        "<p>Use the backup gateway vpn-bj in the meantime.</p></body></html>")


def _alternative(plain: str, html: str | None) -> bytes:
    msg = MIMEMultipart("alternative")
    msg["Subject"] = "IT notice: VPN maintenance"
    msg["From"] = "it@acme.example"
    msg.attach(MIMEText(plain, "plain", "utf-8"))
    if html is not None:
        msg.attach(MIMEText(html, "html", "utf-8"))
    return msg.as_bytes()


@pytest.mark.parametrize("plain", ["", "\n\n", "This message is in HTML. Please view it in a browser."])
def test_an_empty_or_stub_plain_part_gives_way_to_the_html_part(plain: str) -> None:
    doc = parse_file(_alternative(plain, HTML), "notice.eml")
    assert [b.text for b in doc.blocks] == [
        "The VPN gateway vpn-sh will be down on Saturday 10:00-12:00 for maintenance.",
        "Use the backup gateway vpn-bj in the meantime."]
    assert "skipped_attachments" not in doc.metadata  # the HTML version is the body, not an attachment


def test_a_plain_part_that_says_as_much_is_the_body() -> None:
    plain = "VPN down Saturday 10:00-12:00.\nUse vpn-bj meanwhile."
    doc = parse_file(_alternative(plain, "<p>VPN down Saturday 10:00-12:00.</p><p>Use vpn-bj meanwhile.</p>"), "n.eml")
    assert doc.text == "VPN down Saturday 10:00-12:00.\nUse vpn-bj meanwhile."
    long_plain = "The VPN gateway is down on Saturday. " * 10  # over the stub length: read as it is
    assert parse_file(_alternative(long_plain, HTML), "n.eml").text == long_plain.strip()


def test_an_empty_plain_part_alone_is_still_no_body() -> None:
    with pytest.raises(DocumentRejected, match="no readable text body"):
        parse_file(_alternative("", None), "empty.eml")
