"""`inhouse status`: what a running server has loaded, its memory, and when it will release it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from inhouse.cli.common import DataDirOption, cells, console, esc, fail, server_error, settings_from, translate_errors


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        url: str = typer.Option(None, "--url", envvar="INHOUSE_URL",
                                help="The server (default: http://127.0.0.1:<server.port>)."),
        api_key: str = typer.Option(None, "--api-key", envvar="INHOUSE_API_KEY", help="API key.",
                                    show_default=False),
        data_dir: Path = DataDirOption,
    ) -> None:
        """Show loaded models, the server's memory, the idle-release timer and the next scheduled events."""
        import httpx

        if not url:
            settings = settings_from(data_dir)
            url = f"http://127.0.0.1:{settings.server.port}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        with translate_errors():
            try:
                resp = httpx.get(url.rstrip("/") + "/v1/status", headers=headers, timeout=10)
            except (httpx.InvalidURL, httpx.HTTPError) as exc:
                raise server_error(url, exc) from None
        if resp.status_code != 200:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text[:200]
            fail(f"{url} answered {resp.status_code}: {message}", code=4 if resp.status_code in (401, 403) else 1)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            fail(f"{url} answered 200 but not with inhouse's status (is it an inhouse server?).", code=1)
            return
        print_status(body)


def _mb(n: Any) -> str:
    return f"{n / 2**20:,.0f} MB" if isinstance(n, (int, float)) else "?"


def print_status(body: dict[str, Any]) -> None:
    """The server's answer: its values (model names, reasons) are shown as written, never read as markup."""
    table = Table(title="loaded models")
    for col in ("model", "weights", "running", "waiting", "engine", "crashes"):
        table.add_column(col)
    for m in body.get("loaded", []):
        table.add_row(*cells(m.get("model", "?"), _mb(m.get("weights_bytes")), m.get("running", ""),
                             m.get("waiting", ""), m.get("engine", ""), m.get("crashes", "")))
    if body.get("loaded"):
        console.print(table)
    else:
        console.print("No model is loaded (the next request loads it).")
    embedder = body.get("embedder")
    if isinstance(embedder, dict):
        left = embedder.get("idle_release_in_s")
        state = (("in use" if embedder.get("busy") else "loaded")
                 + (f", release in {left:g} s" if isinstance(left, (int, float)) else "")
                 if embedder.get("loaded") else "not loaded (the next search or upload loads it)")
        console.print(f"Embedder {esc(embedder.get('model', '?'))} ({esc(embedder.get('engine', '?'))}): {state}.",
                      highlight=False)
    console.print(f"Server memory (RSS): {_mb(body.get('rss_bytes'))}")
    idle = body.get("idle_release_s")
    if idle:
        left = body.get("idle_release_in_s")
        when = f"release in {left:g} s" if left is not None else "no model loaded"
        console.print(f"Idle release after {idle:g} s: idle for {body.get('idle_for_s', 0):g} s, {when}.")
    else:
        console.print("Idle release: off.")
    console.print(f"Next prewarm: {esc(body.get('next_prewarm') or '-')}   next release: "
                  f"{esc(body.get('next_release') or '-')}")
    last = body.get("last_release")
    if last:
        console.print(f"Last release: {esc(last['at'])} ({esc(last['reason'])}): RSS {_mb(last['rss_before_bytes'])} → "
                      f"{_mb(last['rss_after_bytes'])}")
    hw = body.get("hardware") or {}
    if hw.get("probed"):
        console.print(f"Hardware: {esc(hw.get('cpu'))}, {esc(hw.get('cores'))} cores, {esc(hw.get('bandwidth_gb_s'))} "
                      f"GB/s; {esc(hw.get('amx'))}", highlight=False)
    for model, choice in (hw.get("weight_buffers") or {}).items():
        console.print(f"Weight buffers of {esc(model)}: {esc(choice.get('value'))} ({esc(choice.get('reason'))})",
                      highlight=False)
    if hw.get("default_model_reason"):
        console.print(f"Default model {esc(body.get('default_model'))}: {esc(hw['default_model_reason'])}",
                      highlight=False)
    wake = body.get("last_wake")
    if wake:
        console.print(f"Last wake-up: {esc(wake['at'])}, {esc(wake['model'])} in {wake['seconds'] * 1000:.0f} ms "
                      f"({body.get('wakes', 0)} in all)")
