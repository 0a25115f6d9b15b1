"""``benchmarks.derived_labels``'s made-up derivatives: a copy holds the whole source, a draft the source and as much
again, an excerpt about 15% of it in one run of chunks, a snippet its longest chunk in a short forward, a quote one
short chunk inside a bystander; the same seed makes the same ones. The exact rule it judges them by, and its chart
(with the raised-later panel)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.derived_labels import chart, derivatives, exact_rule

from inhouse.kb.resemblance import phrases


def test_each_kind_takes_the_share_of_its_source_it_says() -> None:
    sources = [[f"source {s} paragraph {i} " * 8 for i in range(30)] for s in range(3)]
    bystanders = [[f"bystander {b} paragraph {i} " * 8 for i in range(40)] for b in range(2)]
    made = derivatives(sources, bystanders, seed=5)
    assert made == derivatives(sources, bystanders, seed=5)
    assert {k: len(v) for k, v in made.items()} == {"copy": 3, "draft": 3, "excerpt": 3, "snippet": 3, "quote": 3}
    for src, copy, draft, excerpt, snippet, quote in zip(sources, made["copy"], made["draft"], made["excerpt"],
                                                         made["snippet"], made["quote"], strict=True):
        size = sum(map(len, src))
        assert copy[1:] == src and draft[:len(src)] == src
        assert size <= sum(map(len, draft[len(src):])) < size + len(bystanders[0][0])
        taken = excerpt[1:-1]
        assert 0.15 * size <= sum(map(len, taken)) < 0.15 * size + len(src[0])
        start = src.index(taken[0])
        assert taken == (src + src)[start:start + len(taken)]  # one run of consecutive chunks (it may wrap)
        assert quote[-1] in src and quote[:-1] in bystanders
        assert len(snippet) == 3 and snippet[1] == max(src, key=len)  # one passage, a line either side


def test_the_exact_rule_counts_every_phrase() -> None:
    source = " ".join(f"word{i}" for i in range(200))  # 196 phrases
    full = [set(phrases([source]).tolist())]
    assert exact_rule([source], full, 40, 0.5)
    assert exact_rule(["intro " + " ".join(f"word{i}" for i in range(150))], full, 40, 0.5)  # 3/4 of the source
    assert exact_rule([" ".join(f"word{i}" for i in range(50)) + " tail"], full, 40, 0.5)  # mostly an excerpt
    assert not exact_rule([" ".join(f"word{i}" for i in range(30))], full, 40, 0.5)  # too short to count
    other = " ".join(f"other{i}" for i in range(300))
    assert not exact_rule([" ".join(f"word{i}" for i in range(60)) + " " + other], full, 40, 0.5)  # a quote


def test_the_chart_draws(tmp_path: Path) -> None:
    kinds = {k: {"made": 10, "raised": r, "rule": r, "raised_wrongly": 0, "missed": 0}
             for k, r in (("bystander", 1), ("copy", 10), ("draft", 10), ("excerpt", 8), ("quote", 0))}
    result = {"sample": 2, "kinds": kinds, "raised_wrongly": 0, "missed": 0, "match_ms_per_page": 4.2}
    out = chart(result, tmp_path / "derived.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    later = {"kinds": kinds, "raised_wrongly": 0, "missed": 0, "raise_ms_median": 80.0, "vectors": "fake-trigram"}
    both = chart({**result, "raised_later": later}, tmp_path / "both.png")
    assert both.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and both.stat().st_size > out.stat().st_size
