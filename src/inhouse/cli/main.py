"""The `inhouse` command. Each command group lives in its own module; heavy imports happen inside commands
so that `inhouse --help` is instant."""

from __future__ import annotations

import typer

from inhouse.cli import chat, keys, models, serve

app = typer.Typer(
    name="inhouse",
    help="Private AI on the CPUs you already own: an OpenAI-compatible llama.cpp server and tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
serve.register(app)
chat.register(app)
app.add_typer(models.app, name="models", help="List, pull and register models.")
app.add_typer(keys.app, name="keys", help="Create, list and revoke API keys.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
