"""`inhouse keys …`: API keys (stored hashed; the secret is shown once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.table import Table

from inhouse.cli.common import DataDirOption, console, fail, open_services, settings_from, translate_errors

app = typer.Typer(no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", "-n", help="Who or what the key is for."),
    role: str = typer.Option("member", "--role", help="admin or member."),
    expires_days: int = typer.Option(0, "--expires-days", help="Expire after N days (0: never)."),
    data_dir: Path = DataDirOption,
) -> None:
    """Create a key and print its secret once."""
    if role not in ("admin", "member"):
        fail(f"--role must be admin or member, not {role!r}.")
    if expires_days < 0:
        fail("--expires-days must be 0 or more.")
    with translate_errors():
        services = open_services(settings_from(data_dir))
        try:
            expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
            record, secret = services.keys.create_key(name, role=role, expires_at=expires)  # type: ignore[arg-type]
        finally:
            services.close()
    console.print(f"Created {record.id} ({record.role}) for {record.name!r}. Secret (shown only now):")
    console.print(secret, highlight=False, soft_wrap=True)


@app.command("list")
def list_(data_dir: Path = DataDirOption) -> None:
    """List keys (never their secrets)."""
    with translate_errors():
        services = open_services(settings_from(data_dir))
        try:
            records = services.keys.list_keys()
        finally:
            services.close()
    table = Table("id", "name", "role", "prefix", "created", "expires", "revoked")
    for r in records:
        table.add_row(r.id, r.name, r.role, r.prefix, str(r.created_at)[:19], str(r.expires_at or "")[:19],
                      str(r.revoked_at or "")[:19])
    console.print(table)


@app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key id (key_…)."), data_dir: Path = DataDirOption) -> None:
    """Revoke a key; it stops working on the next request."""
    with translate_errors():
        services = open_services(settings_from(data_dir))
        try:
            services.keys.revoke(key_id)
        finally:
            services.close()
    console.print(f"Revoked {key_id}.")
