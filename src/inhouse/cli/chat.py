"""`inhouse chat` (interactive) and `inhouse run "prompt"` (one shot), streamed.

Both talk either to a running server (`--url`, key from `--api-key`/`INHOUSE_API_KEY`) or, without
`--url`, to an in-process engine built from the local data directory.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import typer

from inhouse.cli.common import (
    DataDirOption,
    console,
    err_console,
    open_services,
    server_error,
    settings_from,
    translate_errors,
)
from inhouse.errors import AuthenticationFailed, InhouseError, InvalidRequest, NotFound, Overloaded, Unavailable

Streamer = Callable[[list[dict[str, Any]]], AsyncIterator[str]]


def _remote_streamer(url: str, api_key: str | None, model: str | None, options: dict[str, Any]) -> Streamer:
    import httpx

    async def stream(messages: list[dict[str, Any]]) -> AsyncIterator[str]:
        body: dict[str, Any] = {"model": model or "", "messages": messages, "stream": True, **options}
        if not model:
            body.pop("model")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=httpx.Timeout(600, connect=5)) as client:
                if not model:
                    listing = await client.get("/v1/models", headers=headers)
                    _raise_for(listing)
                    body["model"] = listing.json()["data"][0]["id"]
                async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        _raise_for(resp)
                    async for line in resp.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[6:])
                        if "error" in chunk:
                            raise InhouseError(chunk["error"].get("message", "the server failed"))
                        for choice in chunk.get("choices", []):
                            text = (choice.get("delta") or {}).get("content")
                            if text:
                                yield text
        except (httpx.InvalidURL, httpx.HTTPError) as exc:  # no server there, a URL without http://, TLS vs HTTP
            raise server_error(url, exc) from None

    return stream


def _raise_for(resp: Any) -> None:
    if resp.status_code < 400:
        return
    try:
        message = resp.json()["error"]["message"]
    except Exception:
        message = f"HTTP {resp.status_code}"
    cls: type[InhouseError] = {401: AuthenticationFailed, 404: NotFound, 429: Overloaded,
                               503: Unavailable}.get(resp.status_code, InvalidRequest)
    raise cls(message) if cls is not Overloaded else Overloaded(message)


def _local_streamer(data_dir: Path | None, model: str | None, options: dict[str, Any]) -> Streamer:
    services = open_services(settings_from(data_dir))
    name = model or services.settings.models.default

    async def stream(messages: list[dict[str, Any]]) -> AsyncIterator[str]:
        prepared = await asyncio.to_thread(
            services.chat.prepare_chat, {"model": name, "messages": messages, **options}
        )
        async for delta in services.chat.stream(prepared):
            if delta.error:
                raise InhouseError(delta.error)
            if delta.text:
                yield delta.text

    return stream


def _streamer(url: str | None, api_key: str | None, data_dir: Path | None, model: str | None,
              temperature: float | None, max_tokens: int | None) -> Streamer:
    options: dict[str, Any] = {}
    if temperature is not None:
        options["temperature"] = temperature
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    if url:
        return _remote_streamer(url, api_key, model, options)
    with err_console.status("loading model…"):
        return _local_streamer(data_dir, model, options)


async def _print_stream(stream: Streamer, messages: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    async for text in stream(messages):
        parts.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(parts)


_URL = typer.Option(None, "--url", envvar="INHOUSE_URL", help="A running server, e.g. http://127.0.0.1:8000.")
_KEY = typer.Option(None, "--api-key", envvar="INHOUSE_API_KEY", help="API key for --url.", show_default=False)
_MODEL = typer.Option(None, "--model", "-m", help="Model name (default: the server's/settings' default).")
_TEMP = typer.Option(None, "--temperature", "-t", help="Sampling temperature (0 = greedy).")
_MAXT = typer.Option(None, "--max-tokens", help="Most tokens to generate.")
_SYSTEM = typer.Option(None, "--system", "-s", help="A system prompt.")


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        prompt: str = typer.Argument(..., help="The prompt; '-' reads standard input."),
        url: str = _URL, api_key: str = _KEY, model: str = _MODEL, temperature: float = _TEMP,
        max_tokens: int = _MAXT, system: str = _SYSTEM, data_dir: Path = DataDirOption,
    ) -> None:
        """Answer one prompt, streamed to standard output."""
        text = sys.stdin.read() if prompt == "-" else prompt
        if not text.strip():
            err_console.print("[bold red]error:[/] the prompt is empty.")
            raise typer.Exit(2)
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        with translate_errors(data_dir):
            stream = _streamer(url, api_key, data_dir, model, temperature, max_tokens)
            asyncio.run(_print_stream(stream, messages))

    @app.command()
    def chat(
        url: str = _URL, api_key: str = _KEY, model: str = _MODEL, temperature: float = _TEMP,
        max_tokens: int = _MAXT, system: str = _SYSTEM, data_dir: Path = DataDirOption,
    ) -> None:
        """Interactive chat. Empty line or Ctrl-D ends; /reset forgets the conversation."""
        with translate_errors(data_dir):
            stream = _streamer(url, api_key, data_dir, model, temperature, max_tokens)
            base = [{"role": "system", "content": system}] if system else []
            messages = list(base)
            console.print("[dim]Type a message; /reset clears history; Ctrl-D quits.[/]")
            while True:
                try:
                    line = console.input("[bold green]you>[/] ")
                except EOFError:
                    break
                if not line.strip():
                    break
                if line.strip() == "/reset":
                    messages = list(base)
                    continue
                messages.append({"role": "user", "content": line})
                try:
                    reply = asyncio.run(_print_stream(stream, messages))
                except KeyboardInterrupt:
                    console.print("[dim](stopped)[/]")
                    messages.pop()
                    continue
                messages.append({"role": "assistant", "content": reply})
