"""The breaks a browser shows (``<br>``, ``<p>``, ``<div>``) separate words in table cells, list items, headings and
quotes, and a page laid out with a table reads as its content.

Before: selectolax's ``text(separator="")`` gave "ShanghaiBuilding A", "Evacuation point:car park B", a Gmail quote
"Hi all,The travel budget is frozen until March.Hiring continues..." and an intranet page laid out in a table came out
as one table block, its headings glued into a cell and its nested table's rows twice.
"""

from __future__ import annotations

from email.message import EmailMessage

from inhouse.kb.parse import parse_file


def _blocks(html: str, name: str = "page.html") -> list[tuple[str, str]]:
    return [(b.kind, b.text) for b in parse_file(html.encode(), name).blocks]


def test_cells_items_and_headings_keep_their_breaks() -> None:
    page = ("<html><body><main><h1>Site<br>contacts</h1>"
            "<table><tr><th>Site</th><th>Contact</th></tr>"
            "<tr><td>Shanghai<br>Building A</td><td>Wang Fang<br>fire warden<br/>ext. 8021</td></tr>"
            "<tr><td><p>Berlin</p><p>Haus 2</p></td><td><div>Jonas Becker</div><div>first aider</div></td></tr>"
            "<tr><td>See the <b>at</b>tached <a href=x>plan</a></td><td>-</td></tr></table>"
            "<ul><li>Evacuation point:<br>car park B</li><li><p>Assembly</p><p>at 10:00</p></li></ul>"
            "</main></body></html>")
    assert _blocks(page) == [
        ("heading", "Site contacts"),
        ("table", "Site | Contact\nShanghai Building A | Wang Fang fire warden ext. 8021\n"
                  "Berlin Haus 2 | Jonas Becker first aider\nSee the attached plan | -"),
        ("list", "- Evacuation point: car park B\n- Assembly at 10:00"),
    ]


def test_a_quoted_reply_keeps_its_lines() -> None:
    msg = EmailMessage()
    msg["Subject"] = "Re: Budget 2027"
    msg["From"] = "cfo@acme.example"
    msg.set_content('<div dir="ltr">Agreed.</div><blockquote class="gmail_quote"><div dir="ltr">Hi all,<div><br></div>'
                    "<div>The travel budget is frozen until March.</div><div>Hiring continues as planned.</div></div>"
                    "</blockquote>", subtype="html")
    doc = parse_file(bytes(msg), "reply.eml")
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("paragraph", "Agreed."),
        ("quote", "Hi all,\nThe travel budget is frozen until March.\nHiring continues as planned."),
    ]


def test_a_layout_table_reads_as_content_and_a_nested_table_once() -> None:
    page = ("<html><body><table width=100%><tr><td colspan=2>ACME intranet</td></tr>"
            "<tr><td><a href=a>Home</a><br><a href=b>News</a></td><td>"
            "<h2>Password reset</h2><p>Reset your password every 90 days.</p>"
            "<table border=1><tr><th>System</th><th>Contact</th></tr><tr><td>Mail</td><td>Wang Fang 8021</td></tr>"
            "</table><h2>Printers</h2><p>The queue is PRN-3F-01.</p></td></tr></table></body></html>")
    doc = parse_file(page.encode(), "it.html")
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("paragraph", "ACME intranet"),
        ("paragraph", "Home\nNews"),
        ("heading", "Password reset"),
        ("paragraph", "Reset your password every 90 days."),
        ("table", "System | Contact\nMail | Wang Fang 8021"),
        ("heading", "Printers"),
        ("paragraph", "The queue is PRN-3F-01."),
    ]
    assert doc.blocks[4].section == ("Password reset",)
    presentation = '<html><body><table role="presentation"><tr><td><p>Left</p></td><td><p>Right</p></td></tr></table>'
    assert _blocks(presentation) == [("paragraph", "Left"), ("paragraph", "Right")]


def test_a_quote_breaks_where_the_browser_does_not_where_the_source_does() -> None:
    page = ("<html><body><main><blockquote><p>The travel budget is frozen\n   until March.</p>"
            "<table><tr><td><p>Hotel</p></td><td><p>950 CNY</p><p>a night</p></td></tr>"
            "<tr><td>Train</td><td>second class</td></tr></table></blockquote></main></body></html>")
    assert _blocks(page) == [
        ("quote", "The travel budget is frozen until March.\nHotel 950 CNY a night\nTrain second class")]
