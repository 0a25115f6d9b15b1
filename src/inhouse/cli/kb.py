"""`inhouse ingest`, `ask`, `search`, `collections …` and `kb eval`: company knowledge from the command line.

The CLI works on the local data directory directly, as the local administrator (like `inhouse keys`); pass
`--key` to `ask`/`search` to act as an API key instead (its groups and access apply, as over HTTP).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from inhouse.cli.common import (
    CLI_ACTOR,
    DataDirOption,
    cells,
    console,
    err_console,
    esc,
    open_services,
    services_for,
    stop_signals,
    translate_errors,
)
from inhouse.cli.runs import CommandRun, ReadRun, acting_as
from inhouse.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from inhouse.kb.index.protocol import Collection
    from inhouse.kb.service import KnowledgeBase
    from inhouse.services import Services

collections_app = typer.Typer(no_args_is_help=True)
kb_app = typer.Typer(no_args_is_help=True)


def _kb(services: Services) -> KnowledgeBase:
    return services.kb


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("ask")(ask)
    app.command("search")(search)
    app.add_typer(collections_app, name="collections", help="List, create, show and delete knowledge collections.")
    app.add_typer(kb_app, name="kb", help="Knowledge base tools (consistency check, evaluation).")


def ingest(
    paths: list[Path] = typer.Argument(..., help="Files and directories (walked recursively)."),
    collection: str = typer.Option(..., "--collection", "-c", help="Collection name or id."),
    label: str = typer.Option(None, "--label", "-l", help="public, internal, confidential or restricted "
                              "(none: treated as confidential)."),
    group: list[str] = typer.Option([], "--group", "-g", help="Group allowed to read. Creates the collection "
                                    "for these groups if it does not exist; otherwise narrows these documents."),
    sync: bool = typer.Option(False, "--sync", help="The paths are directories the collection mirrors: add new "
                              "and changed files, keep unchanged ones, remove documents of files that are gone."),
    data_dir: Path = DataDirOption,
) -> None:
    """Ingest files into a collection: parse, chunk, embed, index. Unchanged files are skipped."""
    with translate_errors(data_dir):  # a typo creates no collection and no audit record
        _check_paths(paths, sync=sync)
    with services_for(data_dir) as services:
        kb = _kb(services)
        created = False
        named = services.directory.resolve_groups(group)
        group = [g.name for g in named]
        try:
            col = kb.collection(CLI_ACTOR, collection)
        except NotFound:
            col = _create_collection(services, collection, groups=group)
            created = True
            console.print(f"Created collection {esc(repr(collection))} for groups {esc(group or '(admins only)')}.")
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[files]} files"),
                      TextColumn("· {task.fields[chunks]} chunks · {task.fields[rate]:.1f} chunks/s"),
                      TimeElapsedColumn(), TextColumn("· ETA {task.fields[eta]}"), console=err_console,
                      transient=False) as bar:
            task = bar.add_task("syncing" if sync else "ingesting", total=None, files="0/?", chunks=0, rate=0.0,
                                eta="…")

            def on_progress(p: object) -> None:
                from inhouse.kb.ingest import IngestProgress

                assert isinstance(p, IngestProgress)
                # The bar and the ETA follow bytes (a 5 MB manual page is not one small text file's worth of work).
                total, done = (p.bytes_total, p.bytes_done) if p.bytes_total else (p.files_total, p.files_done)
                bar.update(task, total=total, completed=done, files=f"{p.files_done}/{p.files_total}",
                           chunks=p.chunks_done, rate=p.chunks_per_s, eta=format_eta(p.eta_s))
                if "OCR page" in p.current:  # a scan is read page by page: say which page (a few seconds each)
                    bar.update(task, description=esc(p.current.rsplit(": ", 1)[-1]))
                elif p.current:
                    bar.update(task, description="syncing" if sync else "ingesting")

            def stop() -> None:
                report.stop_requested = True
                err_console.print("stopping after the file being read (again to stop at once)…")

            run = _IngestRun(services, col.id, paths, sync)
            report = run.report
            with run.recorded(), stop_signals(stop):
                kb.ingest_paths(CLI_ACTOR, collection, paths, label=label, groups=None if created else (group or None),
                                progress=on_progress, sync=sync, report=report)
                if not created:  # a group deleted meanwhile (over HTTP) leaves the lists this run wrote
                    written = [o.document_id for o in report.outcomes
                               if o.document_id and o.status in ("added", "replaced", "moved")]
                    def take_off(names: list[str]) -> None:
                        for doc in written:
                            kb.forget_groups_on(doc, names, run=run.request_id)

                    gone = services.directory.recheck_groups(named, take_off)
                    if gone:
                        run.note(groups_deleted_meanwhile=gone)
    for e in report.errors:
        err_console.print(f"[yellow]skipped[/] {esc(e.source_path)}: {esc(e.error)}", highlight=False)
    for o in report.raised:  # every one: an administrator must see each file that said it is more sensitive
        why = o.marking if o.derived_from is not None else f"its marking, {o.marking}"
        console.print(f"labelled {o.label} {esc(o.source_path)}: {esc(why)}", highlight=False)
    moved = [o for o in report.outcomes if o.status == "moved"]
    for o in moved[:20]:
        if o.same_text is not None:
            console.print(f"moved and edited {esc(o.moved_from)} → {esc(o.source_path)} ({o.same_text:.0%} of the "
                          "text the same: its new version, label and access list kept)", highlight=False)
        else:
            console.print(f"moved {esc(o.moved_from)} → {esc(o.source_path)} (its document, label and access list "
                          "kept)", highlight=False)
    if len(moved) > 20:
        console.print(f"… and {len(moved) - 20} more moved", highlight=False)
    removed = [o for o in report.outcomes if o.status == "removed"]
    for o in removed[:20]:
        console.print(f"removed {esc(o.source_path)} ({o.chunks} chunks)", highlight=False)
    if len(removed) > 20:
        console.print(f"… and {len(removed) - 20} more removed", highlight=False)
    console.print(
        f"{report.files} files ({report.count('added')} added, {report.count('replaced')} replaced, "
        f"{report.count('unchanged')} unchanged, {len(report.errors)} errors"
        + (f", {len(moved)} moved, {len(removed)} removed" if sync else "")
        + (f", {len(report.raised)} labelled higher by their markings or their text's source" if report.raised
           else "")
        + f"), {report.chunks} chunks"
        + (f" ({report.reused_chunks} unchanged in replaced documents, not embedded again)"
           if report.reused_chunks else "")
        + " in "
        f"{report.seconds:.1f} s = {report.chunks_per_s:.1f} chunks/s"
        + (f" (embedding {report.embed_chunks_per_s:.1f} chunks/s; {report.load_seconds:.1f} s loading the model)"
           if report.embed_seconds > 0 else "")
    )
    if report.errors and report.files == len(report.errors):
        raise typer.Exit(1)


def _check_paths(paths: Sequence[Path], *, sync: bool) -> None:
    """Every path is there (and with ``sync`` a directory): checked before the command changes anything."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise InvalidRequest("; ".join(f"{p}: no such file or directory" for p in missing), param="paths")
    files = [p for p in paths if not p.is_dir()] if sync else []
    if files:
        raise InvalidRequest(f"--sync takes directories: {files[0]} is a file, and a single file has nothing to "
                             "remove.", param="paths")


class _IngestRun(CommandRun):
    """``inhouse ingest`` as a ``CommandRun`` (action ``kb:write``, as an upload): its final record names the
    documents the run added, replaced, moved or removed, with the counts of its report."""

    def __init__(self, services: Services, collection_id: str, paths: list[Path], sync: bool) -> None:
        from inhouse.kb.ingest import IngestReport

        super().__init__(services, action="kb:write",
                         resource=f"inhouse ingest{' --sync' if sync else ''} {collection_id}",
                         details={"paths": [p.name for p in paths][:20]})
        self.report = IngestReport(run=self.request_id)

    def _changed(self) -> list[str]:
        """Its outcomes, and the run journal, which also holds a commit the run stopped (a second Ctrl-C) before
        noting."""
        noted = [o.document_id for o in self.report.outcomes
                 if o.document_id and o.status in ("added", "replaced", "moved", "removed")]
        return list(dict.fromkeys(noted + super()._changed()))

    def _final_details(self, listed: int) -> dict[str, object]:
        from inhouse.governance.audit.log import MAX_RECORD_DOCUMENTS

        report = self.report
        counts = {status: report.count(status) for status in ("added", "replaced", "unchanged", "moved", "removed")}
        return {**self.details, **counts, "errors": len(report.errors),
                "documents_not_listed": max(0, listed - MAX_RECORD_DOCUMENTS)}


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def ask(
    question: str = typer.Argument(..., help="The question."),
    collection: list[str] = typer.Option([], "--collection", "-c", help="Limit to these collections."),
    model: str = typer.Option(None, "--model", "-m", help="Model (default: kb.answer_model or models.default)."),
    key: str = typer.Option(None, "--key", envvar="INHOUSE_API_KEY", help="Act as this API key."),
    data_dir: Path = DataDirOption,
) -> None:
    """Answer from the documents, with numbered citations."""
    with services_for(data_dir) as services:
        kb = _kb(services)
        name = model or services.settings.kb.answer_model or services.settings.models.default
        actor = acting_as(services, key, "chat:create", "inhouse ask")
        run = ReadRun(services, actor, action="chat:create", resource="inhouse ask", ahead=True,
                       details={"collections": collection}, model=name)
        with run.recorded():
            answer = asyncio.run(kb.answerer.answer(actor, question, collection or None, model=name))
            if answer.grounding.covered:  # not covered: the model was given no passage
                run.read(answer.grounding.hits)
                # Remembered before it is shown, as a grounded chat completion's: pasted into a chat for a cloud
                # model it counts at its passages' label (raises, and nothing is shown, if it cannot be kept).
                services.answers.remember_derived([answer.text], answer.grounding.labels)
            if answer.usage is not None:
                run.note(prompt_tokens=answer.usage.prompt_tokens, completion_tokens=answer.usage.completion_tokens)
    console.print(answer.text, highlight=False, markup=False)
    for c in answer.citations:
        where = c.title + (f" > {c.section}" if c.section else "") + (f", page {c.page_start}" if c.page_start else "")
        console.print(f"[dim][{c.n}] {esc(where)} ({esc(c.document_id)})[/]", highlight=False)


def search(
    query: str = typer.Argument(..., help="What to look for."),
    collection: list[str] = typer.Option([], "--collection", "-c", help="Limit to these collections."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=50),
    key: str = typer.Option(None, "--key", envvar="INHOUSE_API_KEY", help="Act as this API key."),
    data_dir: Path = DataDirOption,
) -> None:
    """Show the best matching chunks (hybrid keyword + vector search)."""
    with services_for(data_dir) as services:
        actor = acting_as(services, key, "kb:read", "inhouse search")
        run = ReadRun(services, actor, action="kb:read", resource="inhouse search", ahead=False,
                       details={"collections": collection, "top_k": top_k})
        with run.recorded():
            hits = _kb(services).search(actor, query, collections=collection or None, top_k=top_k)
            run.read(hits)  # recorded before anything is shown
    for i, h in enumerate(hits, start=1):
        c = h.chunk
        console.print(f"[bold]{i}. {esc(c.title)}[/] [dim]{esc(c.source_path)} {esc(c.section)} "
                      f"score={h.score:.4f}[/]", highlight=False)
        console.print("   " + c.content[:300].replace("\n", " "), highlight=False, markup=False)


@collections_app.command("list")
def collections_list(data_dir: Path = DataDirOption) -> None:
    """List collections with their access lists."""
    with services_for(data_dir) as services:
        cols = _kb(services).list_collections(CLI_ACTOR)
    table = Table("id", "name", "documents", "groups", "keys", "sketch", "description")
    for c in cols:
        table.add_row(*cells(c.id, c.name, c.document_count, ", ".join(sorted(c.acl.groups)),
                             ", ".join(sorted(c.acl.keys)), "yes" if c.sketch_questions else "", c.description[:60]))
    console.print(table)


@collections_app.command("create")
def collections_create(
    name: str = typer.Argument(...),
    group: list[str] = typer.Option([], "--group", "-g", help="Group allowed to read and write."),
    key: list[str] = typer.Option([], "--key-id", help="API key id (key_…) allowed."),
    description: str = typer.Option("", "--description", help="What the documents are, e.g. \"PostgreSQL 16 manual\" "
                                                              "(told to the model that sketches questions)."),
    sketch_questions: bool = typer.Option(
        False, "--sketch-questions", help="Technical manuals: questions searched here also get the local model's "
                                          "code sketch, so a question that names a goal finds the feature's entry."),
    data_dir: Path = DataDirOption,
) -> None:
    """Create a collection (admins always have access)."""
    with services_for(data_dir) as services:
        col = _create_collection(services, name, groups=group, keys=key, description=description,
                                 sketch_questions=sketch_questions)
    console.print(f"Created {col.id} ({esc(col.name)}).")


def _create_collection(services: Services, name: str, *, groups: Sequence[str], keys: Sequence[str] = (),
                       description: str = "", sketch_questions: bool = False) -> Collection:
    """A new collection, recorded (its access list: who may read it from now on)."""
    named = services.directory.resolve_groups(groups)  # a name that is no group admits nobody, until one is made
    kb = _kb(services)
    run = CommandRun(services, action="kb:manage", resource=f"inhouse collections create {name}")
    with run.recorded():
        col = kb.create_collection(CLI_ACTOR, name, groups=[g.name for g in named], keys=keys,
                                   description=description, sketch_questions=sketch_questions)
        # A group deleted while the list was written (over HTTP) leaves it (UserDirectory.recheck_groups).
        gone = services.directory.recheck_groups(named, lambda names: kb.forget_groups_on(col.id, names,
                                                                                          run=run.request_id))
        if gone:
            col = kb.collection(CLI_ACTOR, col.id)
            run.note(groups_deleted_meanwhile=gone)
        run.note(collection_id=col.id, access_after=col.acl.to_dict())
    return col


@collections_app.command("update")
def collections_update(
    name: str = typer.Argument(...),
    description: str = typer.Option(None, "--description", help="Replace the description."),
    sketch_questions: bool = typer.Option(None, "--sketch-questions/--no-sketch-questions",
                                          help="Turn the code sketch of questions searched here on or off."),
    data_dir: Path = DataDirOption,
) -> None:
    """Change a collection's description or whether its questions are sketched (access: the HTTP API)."""
    with translate_errors(data_dir):
        if description is None and sketch_questions is None:
            raise InvalidRequest("Nothing to change: give --description or --[no-]sketch-questions.")
    with services_for(data_dir) as services:
        kb = _kb(services)
        before = kb.collection(CLI_ACTOR, name)
        run = CommandRun(services, action="kb:manage", resource=f"inhouse collections update {before.id}")
        with run.recorded():
            col = kb.update_collection(CLI_ACTOR, before.id, description=description,
                                       sketch_questions=sketch_questions)
            run.note(changes={k: {"before": getattr(before, k), "after": getattr(col, k)}
                              for k in ("description", "sketch_questions") if getattr(before, k) != getattr(col, k)})
    console.print(f"Updated {col.id} ({esc(col.name)}): sketch questions {'on' if col.sketch_questions else 'off'}.")


@collections_app.command("show")
def collections_show(name: str = typer.Argument(...), data_dir: Path = DataDirOption) -> None:
    """A collection's documents."""
    with services_for(data_dir) as services:
        kb = _kb(services)
        docs = kb.list_documents(CLI_ACTOR, name, limit=1000)
    table = Table("id", "source", "label", "chunks", "version", "title")
    for d in docs:
        table.add_row(*cells(d.id, d.source_path, d.label.value, d.chunk_count, d.version, d.title[:60]))
    console.print(table)


@collections_app.command("markings")
def collections_markings(
    name: str = typer.Argument(...),
    apply: bool = typer.Option(False, "--apply", help="Raise the labels listed (default: only list them)."),
    data_dir: Path = DataDirOption,
) -> None:
    """Documents whose own markings (a Purview label, CONFIDENTIAL in the title or a footer...), or the more
    sensitive document their text was taken from, call for a more sensitive label than they have: ingested before
    markings were read or their source was labelled, or under other kb.label_names."""
    with services_for(data_dir) as services:
        kb = _kb(services)
        if not apply:  # a listing changes nothing
            found = kb.review_markings(CLI_ACTOR, name)
        else:
            col = kb.collection(CLI_ACTOR, name)
            run = CommandRun(services, action="kb:manage", resource=f"inhouse collections markings --apply {col.id}")
            with run.recorded():
                found = kb.review_markings(CLI_ACTOR, col.id, apply=True, run=run.request_id)
                # Each raise with its label before (the record's ``documents`` also names those whose marking was
                # only noted, the label members may not relabel below).
                run.note(raised=[{"id": r.document.id, "label": r.marked.label.value,
                                  "label_before": r.document.label.value, "derived_from": r.derived_from}
                                 for r in found[:50]], raised_count=len(found))
    for review in found:
        doc = review.document
        verb = "labelled" if apply else "would label"
        why = review.marked.reason if review.derived_from else f"its marking, {review.marked.reason}"
        console.print(f"{verb} {review.marked.label} {esc(doc.source_path)} (was {doc.label}): {esc(why)}",
                      highlight=False)
    if not found:
        console.print(f"No document of {esc(name)} is labelled below its markings.")
    elif not apply:
        console.print(f"{len(found)} documents; run again with --apply to raise their labels.")


@collections_app.command("delete")
def collections_delete(name: str = typer.Argument(...), data_dir: Path = DataDirOption) -> None:
    """Delete a collection and every trace of its documents."""
    with services_for(data_dir) as services:
        kb = _kb(services)
        col = kb.collection(CLI_ACTOR, name)
        run = CommandRun(services, action="kb:manage", resource=f"inhouse collections delete {col.id}",
                          details={"name": col.name})
        with run.recorded():  # names every document deleted with it
            kb.delete_collection(CLI_ACTOR, col.id, run=run.request_id)
    console.print(f"Deleted {esc(name)}.")


@kb_app.command("check")
def kb_check(
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    data_dir: Path = DataDirOption,
) -> None:
    """Check the knowledge index: the database's integrity check and the consistency of documents, chunks, the
    keyword index and the vectors. Exit 0 when consistent, 1 otherwise."""
    import json

    with services_for(data_dir) as services:
        result = _kb(services).store.check()
    if json_out:
        console.print_json(json.dumps(result.to_dict()))
    else:
        c = result.counts
        console.print(f"{c['documents']} documents, {c['chunks']} chunks, {c['fts_rows']} keyword rows, "
                      f"{c['vectors']} vectors; integrity: {'; '.join(result.integrity)[:500]}; keyword index: "
                      f"{result.fts_integrity[:200]}", highlight=False, markup=False)
        for name, n in result.problems.items():
            err_console.print(f"[bold red]problem:[/] {esc(name)} = {esc(n)}", highlight=False)
        console.print("[green]consistent[/]" if result.ok else "[bold red]NOT consistent[/]")
    if not result.ok:
        raise typer.Exit(1)


@kb_app.command("eval")
def kb_eval(
    corpus: Path = typer.Option(None, "--corpus", show_default=False,
                                help="Corpus folder (default: $INHOUSE_EVAL_CORPUS, else ../shared/corpus beside "
                                "the repository)."),
    model: str = typer.Option(None, "--model", "-m", help="Also answer with this model (accuracy)."),
    limit: int = typer.Option(0, "--limit", help="Only the first N questions (0: all)."),
    qa: list[Path] = typer.Option([], "--qa", help="QA file(s) over the corpus (default: <corpus>/qa.jsonl); e.g. "
                                  "benchmarks/data/qa-crosslingual.jsonl for the cross-lingual questions."),
    translate_with: str = typer.Option(None, "--translate-with", help="Model that translates questions for "
                                       "retrieval (default: --model)."),
    translate: bool = typer.Option(False, "--translate", help="Translate the questions for retrieval "
                                   "(kb.translate_questions; implied by --translate-with)."),
    no_translate: bool = typer.Option(False, "--no-translate", help="Search the questions as asked only."),
    sketch: bool = typer.Option(False, "--sketch", help="Search also the names in the model's code sketch of each "
                                "question (kb.sketch_questions)."),
    no_sketch: bool = typer.Option(False, "--no-sketch", help="No code sketch (kb.sketch_questions off)."),
    data_dir: Path = typer.Option(
        None, "--data-dir", envvar="INHOUSE_DATA_DIR", show_default=False,
        help="Data directory whose models (and tuned profiles) are used; the evaluation itself runs in a temporary "
        "one, so the corpus is never ingested here."),
) -> None:
    """Recall@5, answer accuracy and not-covered rate on <corpus>/qa.jsonl (in a temporary data directory)."""
    from inhouse.eval_corpus import find_eval_corpus
    from inhouse.kb.evaluate import main as evaluate_main

    with translate_errors():
        found = find_eval_corpus(corpus)
        if data_dir is not None and not data_dir.is_dir():
            raise InvalidRequest(f"--data-dir {data_dir}: no such directory (its models are what is evaluated).")
    argv = ["--corpus", str(found)] + (["--model", model] if model else [])
    argv += ["--limit", str(limit)] if limit else []
    for path in qa:
        argv += ["--qa", str(path)]
    argv += ["--translate-with", translate_with] if translate_with else []
    argv += ["--translate"] if translate else []
    argv += ["--no-translate"] if no_translate else []
    argv += ["--sketch"] if sketch else []
    argv += ["--no-sketch"] if no_sketch else []
    argv += ["--models-from", str(data_dir)] if data_dir else []
    raise typer.Exit(evaluate_main(argv, open_services=open_services))
