"""Code sketches for retrieval: the request, the checks on the model's output, the names taken from the code, the
wordings searched, and how retrieval fuses them (not counted for the similarity gate; headings that name them)."""

from __future__ import annotations

import asyncio

import pytest
from scripted import ReplyChat
from tinyindex import put_texts

from inhouse.kb.access import Acl
from inhouse.kb.answer import Answerer
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.retrieve import Retriever, heading_mentions
from inhouse.kb.sketch import CodeSketcher, clean_sketch, sketch_names, sketch_request, sketch_wordings
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

ADMIN = Actor("key_admin", "admin", role="admin")
EMB = FakeEmbedder(64)


def test_the_request_asks_for_code_only_and_names_no_manual() -> None:
    system, user = sketch_request("How do I stop a query that has run for an hour?")
    assert "code only" in system["content"] and "never explain" in system["content"]
    assert "no explanation" in user["content"] and "do not answer in words" in user["content"]
    assert user["content"].endswith("How do I stop a query that has run for an hour?")
    assert "python" not in (system["content"] + user["content"]).lower()


def test_fences_comments_and_prose_are_dropped() -> None:
    reply = "Here is the code you need:\n```python\n# make it\nimport heapq\nheapq.nsmallest(3, xs)\n```\nThis works."
    assert clean_sketch("q", reply) == "import heapq\nheapq.nsmallest(3, xs)"
    assert clean_sketch("q", "You can use the heap functions of the standard library for this.") is None
    assert clean_sketch("q", "30 days") is None  # words without any mark of code: an answer, not a sketch
    assert clean_sketch("q", "`sort -n -r`") == "sort -n -r"  # inline code
    assert clean_sketch("q", "`sha256sum largefile`") == "sha256sum largefile"  # set as code by the model
    assert clean_sketch("q", "```sh\nvirtualenv env\n```") == "virtualenv env"
    assert clean_sketch("q", "sha256sum largefile") is None  # plain words: could be an answer
    assert clean_sketch("q", "python -m venv env") == "python -m venv env"  # a command is no sentence
    assert clean_sketch("q", "SELECT name FROM users WHERE id = 1") == "SELECT name FROM users WHERE id = 1"
    assert clean_sketch("q", "") is None
    assert clean_sketch("q", "```\n```") is None
    assert clean_sketch("x = 1", "x = 1") is None  # the question itself
    many = "\n".join(f"step_{i}()" for i in range(20))
    assert clean_sketch("q", many) == "\n".join(f"step_{i}()" for i in range(6))  # a few lines at most


def test_names_a_manual_would_index() -> None:
    py = "import tempfile\nwith tempfile.TemporaryDirectory() as tmp:\n    print(tmp.name)"
    assert sketch_names(py) == ["tempfile", "tempfile.TemporaryDirectory"]  # no keywords, no bound variable
    sql = "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE state = 'active' AND x.y > 1;"
    assert sketch_names(sql)[:3] == ["pg_cancel_backend", "pid", "pg_stat_activity"]
    assert "active" not in sketch_names(sql)  # string contents are data, not names
    assert sketch_names("statement_timeout = '1h'") == ["statement_timeout"]  # a setting: assigned, never reused
    assert sketch_names("rows = load()\nfor r in rows:\n    keep(r)") == ["load", "keep"]  # a variable: reused
    assert sketch_names("pg_dump --schema-only -f out.sql mydb") == ["pg_dump", "--schema-only", "out.sql", "mydb"]
    assert len(sketch_names(" ".join(f"call_{i}()" for i in range(30)))) == 10


def test_wordings_of_a_sketch() -> None:
    code = "import heapq\nheapq.nsmallest(3, xs)"
    assert sketch_wordings(code, "names") == ["heapq heapq.nsmallest xs"]
    assert sketch_wordings(code, "code") == [code]
    assert sketch_wordings(code, "both") == ["heapq heapq.nsmallest xs", code]
    assert sketch_wordings(None, "both") == []
    with pytest.raises(ValueError):
        sketch_wordings(code, "everything")


def test_sketches_are_cached_and_need_a_local_model() -> None:
    chat = ReplyChat(["```python\nimport heapq\nheapq.nsmallest(3, xs)\n```", "Use a heap for that, it is easy."])
    sk = CodeSketcher(chat)  # type: ignore[arg-type]
    q = "keep the three smallest numbers"
    assert asyncio.run(sk.sketch(q, model="m")) == "import heapq\nheapq.nsmallest(3, xs)"
    assert asyncio.run(sk.sketch(q, model="m")) == "import heapq\nheapq.nsmallest(3, xs)"  # no second call
    assert len(chat.bodies) == 1 and chat.bodies[0]["temperature"] == 0.0 and chat.bodies[0]["max_tokens"] == 64
    assert "stop" not in chat.bodies[0]  # several lines may come back
    assert asyncio.run(sk.sketch("another question", model="m")) is None  # prose: no sketch
    assert asyncio.run(CodeSketcher(ReplyChat([], local=False)).sketch(q, model="ext")) is None  # type: ignore[arg-type]


def test_heading_mentions() -> None:
    names = ["heapq.nsmallest", "pg_cancel_backend", "--schema-only"]
    assert heading_mentions("heapq — Heap queue algorithm", names) == 1  # the module part
    assert heading_mentions("Functions > pg_cancel_backend(pid int)", names) == 1
    assert heading_mentions("pg_dump > Options > --schema-only", names) == 1
    assert heading_mentions("Heap functions > nsmallest(n, iterable)", names) == 1  # the last part
    assert heading_mentions("heapqueue > smallest", names) == 0  # whole words only
    assert heading_mentions("anything", ["os.x"]) == 0  # parts under 3 characters do not count alone


def _store() -> tuple[SqliteIndexStore, str]:
    store = SqliteIndexStore(":memory:", dim=EMB.dim)
    col = store.create_collection("c", acl=Acl()).id
    put_texts(store, col, "tutorial.html", ["keep the smallest numbers of a stream in a list and sort it"], EMB)
    put_texts(store, col, "heapq.html", ["nsmallest(n, iterable): the n smallest elements of the dataset"], EMB)
    return store, col


def test_an_expansion_is_fused_but_not_counted_for_the_similarity_gate() -> None:
    store, _ = _store()
    try:
        r = Retriever(store, EMB, candidates=10)
        q = "keep the three smallest numbers of a stream"
        plain, sim = r.retrieve_scored(ADMIN, q, top_k=1)
        assert plain[0].chunk.source_path == "tutorial.html"
        hits, sim_x = r.retrieve_scored(ADMIN, q, top_k=2, expansions=["heapq.nsmallest"])
        assert {h.chunk.source_path for h in hits} == {"tutorial.html", "heapq.html"}
        assert sim_x == sim  # the sketch's similarity does not open the gate
        _, sim_alt = r.retrieve_scored(ADMIN, q, top_k=2, alternates=["nsmallest(n, iterable)"])
        assert sim_alt > sim  # an alternate (a translation) does count
    finally:
        store.close()


def test_chunks_whose_heading_names_a_sketch_name_move_up() -> None:
    store, _ = _store()
    try:
        r = Retriever(store, EMB, candidates=10)
        q = "keep the three smallest numbers of a stream"
        assert r.retrieve(ADMIN, q, top_k=2)[0].chunk.source_path == "tutorial.html"
        hits, _ = r.retrieve_scored(ADMIN, q, top_k=2, boost_names=["heapq.nsmallest"])
        assert [h.chunk.source_path for h in hits] == ["heapq.html", "tutorial.html"]
        assert hits[0].score > hits[1].score  # scores re-assigned by the new order
        same, _ = r.retrieve_scored(ADMIN, q, top_k=2, boost_names=["unrelated.name"])
        assert [h.chunk.source_path for h in same] == ["tutorial.html", "heapq.html"]
    finally:
        store.close()


def test_the_subject_is_told_to_the_model_and_keys_the_cache() -> None:
    system, user = sketch_request("q", "PostgreSQL 16 manual")
    assert "documents searched are: PostgreSQL 16 manual." in user["content"]
    # written for the system the documents describe, with its own feature (the model otherwise writes shell)
    assert "documents describe" in system["content"] and "ready-made" in user["content"]
    system, user = sketch_request("q", "  ")
    assert "documents" not in system["content"] + user["content"]
    chat = ReplyChat(["pg_cancel_backend(pid)", "kill -9 1234"])
    sk = CodeSketcher(chat)  # type: ignore[arg-type]
    assert asyncio.run(sk.sketch("stop a long query", model="m", subject="PostgreSQL")) == "pg_cancel_backend(pid)"
    assert asyncio.run(sk.sketch("stop a long query", model="m")) == "kill -9 1234"  # another subject: asked again


def test_grounding_searches_the_sketch_names_for_the_collections_subject() -> None:
    store = SqliteIndexStore(":memory:", dim=EMB.dim)
    try:
        col = store.create_collection("docs", acl=Acl(), description="The heap library manual").id
        store.create_collection("other", acl=Acl(), description="Canteen menus")
        put_texts(store, col, "tutorial.html", ["keep the smallest numbers of a stream in a list and sort it"], EMB)
        put_texts(store, col, "heapq.html", ["nsmallest(n, iterable): the n smallest elements of the dataset"], EMB)
        chat = ReplyChat(["```python\nimport heapq\nsmall = heapq.nsmallest(3, stream)\n```"])
        ans = Answerer(Retriever(store, EMB), chat, min_similarity=0.0, top_k=1,  # type: ignore[arg-type]
                       sketch_everywhere=True)
        g = asyncio.run(ans.ground_async(ADMIN, "keep the three smallest numbers of a stream", ["docs"], model="m"))
        assert "The heap library manual" in chat.bodies[0]["messages"][-1]["content"]
        assert "Canteen" not in chat.bodies[0]["messages"][-1]["content"]  # only the collections searched
        assert g.sketch == "import heapq\nsmall = heapq.nsmallest(3, stream)"
        assert [h.chunk.source_path for h in g.hits] == ["heapq.html"]
        off = Answerer(Retriever(store, EMB), ReplyChat([]), min_similarity=0.0, top_k=1)  # type: ignore[arg-type]
        plain = asyncio.run(off.ground_async(ADMIN, "keep the three smallest numbers of a stream", model="m"))
        assert plain.sketch is None and plain.hits[0].chunk.source_path == "tutorial.html"
    finally:
        store.close()


def test_code_passed_as_a_string_keeps_its_names() -> None:
    shell = """psql -c "SELECT pg_stat_activity.pid, count(*) FROM pg_stat_activity WHERE state = 'idle'" mydb"""
    assert sketch_names(shell) == ["psql", "pg_stat_activity.pid", "count", "pg_stat_activity", "mydb"]
    assert sketch_names("people = [3, 1]\npeople.sort(reverse=True)") == ["sort", "reverse"]  # the method counts


def test_the_subject_is_only_what_the_caller_may_see() -> None:
    store = SqliteIndexStore(":memory:", dim=EMB.dim)
    try:
        store.create_collection("hr", acl=Acl(groups=frozenset({"hr"})), description="HR handbook")
        store.create_collection("db", acl=Acl(groups=frozenset({"it"})), description="PostgreSQL 16 manual")
        store.create_collection("plain", acl=Acl(groups=frozenset({"it"})))
        r = Retriever(store, EMB)
        it = Actor("key_i", "i", groups=frozenset({"it"}))

        def subject(actor: Actor, cols: list[str] | None) -> str | None:
            where = r.sketch_scope(actor, cols, everywhere=True)
            return None if where is None else where.subject

        assert subject(it, None) == "PostgreSQL 16 manual"  # the HR handbook's description is not the caller's
        assert set(str(subject(ADMIN, ["hr", "db"])).split("; ")) == {"HR handbook", "PostgreSQL 16 manual"}
        assert subject(it, ["plain"]) == ""
    finally:
        store.close()


class SpyStore:
    """The store, with the collections each search was limited to recorded per query text."""

    def __init__(self, store: SqliteIndexStore) -> None:
        self.store, self.searched, self.listed = store, {}, 0  # type: ignore[var-annotated]

    def list_collections(self):  # type: ignore[no-untyped-def]
        self.listed += 1
        return self.store.list_collections()

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def keyword_search(self, scope, query, f, n):  # type: ignore[no-untyped-def]
        self.searched.setdefault(query, set()).add(f.collection_ids)
        return self.store.keyword_search(scope, query, f, n)


def test_only_collections_with_the_switch_are_sketched_and_the_sketch_is_searched_there_alone() -> None:
    """Per collection (``sketch_questions``): a question that searches the manual and the HR handbook gets a sketch
    written for the manual and searched in the manual only; one that searches only the handbook gets none."""
    store = SqliteIndexStore(":memory:", dim=EMB.dim)
    try:
        manual = store.create_collection("manual", acl=Acl(), description="The heap library manual",
                                         sketch_questions=True).id
        hr = store.create_collection("hr", acl=Acl(), description="HR handbook").id
        put_texts(store, manual, "heapq.html", ["nsmallest(n, iterable): the n smallest elements of the dataset"], EMB)
        put_texts(store, hr, "leave.txt", ["annual leave is 18 days"], EMB)
        spy = SpyStore(store)
        code = "import heapq\nsmall = heapq.nsmallest(3, stream)"
        chat = ReplyChat([code])
        ans = Answerer(Retriever(spy, EMB), chat, min_similarity=0.0, top_k=2)  # type: ignore[arg-type]
        q = "keep the three smallest numbers of a stream"
        g = asyncio.run(ans.ground_async(ADMIN, q, None, model="m"))
        told = chat.bodies[0]["messages"][-1]["content"]
        assert "The heap library manual" in told and "HR handbook" not in told
        assert g.sketch == code
        assert spy.searched[q] == {None} and spy.searched[code] == {frozenset({manual})}
        handbook = asyncio.run(ans.ground_async(ADMIN, "how many days of annual leave", ["hr"], model="m"))
        assert handbook.sketch is None and len(chat.bodies) == 1  # no collection searched asked for it
        assert Retriever(store, EMB).sketch_scope(ADMIN, ["hr"], everywhere=True) is not None  # kb.sketch_questions
        listed = spy.listed
        external = Answerer(Retriever(spy, EMB), ReplyChat([], local=False), min_similarity=0.0)  # type: ignore[arg-type]
        assert asyncio.run(external.ground_async(ADMIN, q, None, model="gpt-x")).sketch is None
        assert spy.listed == listed  # a model that is not local never sketches: the collections are not even read
    finally:
        store.close()
