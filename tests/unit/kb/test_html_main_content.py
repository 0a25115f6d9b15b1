"""Class and id names inside a page's main content decide nothing; outside it only whole names of page furniture do.

Before: a regex found "social" in ``id="social-insurance"`` and "share" in ``id="employee-share-plan"`` and removed
those sections of ``<main>``.
"""

from __future__ import annotations

from inhouse.kb.parse import parse_file

BENEFITS = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Employee benefits 2026</title></head>
<body><nav><a href="/">Home</a></nav>
<{root}>
<h1>Employee benefits 2026</h1>
<section id="social-insurance"><h2>Social insurance</h2><p>Pension contributions are 16 % of gross salary.</p></section>
<section id="employee-share-plan"><h2>Employee share plan</h2><p>Shares vest after two years.</p></section>
<section class="related-benefits"><h2>Canteen</h2><p>Lunch in the canteen costs 12 CNY.</p></section>
<div class="menu-card"><h2>Canteen menu</h2><p>Monday: noodles.</p></div>
<div class="share">Share on WeChat</div>
</{root}></body></html>"""


def test_sections_of_main_are_kept_whatever_their_class_or_id() -> None:
    for root in ("main", 'div role="main"', "article"):
        html = BENEFITS.format(root=root).replace("</div role=\"main\">", "</div>")
        text = parse_file(html.encode(), "benefits.html").text
        for kept in ("16 % of gross salary", "vest after two years", "12 CNY", "Monday: noodles", "Share on WeChat"):
            assert kept in text, (root, kept)
        assert "Home" not in text  # a real <nav> outside the root


def test_without_main_only_whole_furniture_names_are_removed() -> None:
    page = ("<html><body><div id=\"menu\">Home | HR | IT</div><div class=\"site-nav left\">Sitemap</div>"
            "<div class=\"cookie-banner\">We use cookies</div>"
            "<div class=\"content\"><h1>Benefits</h1><div id=\"social-insurance\"><p>Pension is 16 %.</p></div>"
            "<div class=\"menu-card\"><p>Monday: noodles.</p></div>"
            "<div class=\"related-benefits\"><p>Gym at half price.</p></div></div>"
            "<div class=\"related\">Other pages</div></body></html>")
    text = parse_file(page.encode(), "benefits.html").text
    for kept in ("Pension is 16 %.", "Monday: noodles.", "Gym at half price."):
        assert kept in text
    for gone in ("Home | HR", "Sitemap", "We use cookies", "Other pages"):
        assert gone not in text
