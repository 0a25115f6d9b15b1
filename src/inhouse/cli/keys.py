"""`inhouse keys …`: API keys (stored hashed; the secret is shown once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.table import Column, Table

from inhouse.cli.common import (
    DataDirOption,
    cells,
    console,
    esc,
    fail,
    services_for,
)
from inhouse.governance.acl import KEY_SCOPES

app = typer.Typer(no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", "-n", help="Who or what the key is for."),
    role: str = typer.Option(None, "--role", help="admin or member (default: the user's role, else member).",
                             show_default=False),
    user: str = typer.Option(None, "--user", "-u", help="Bind the key to this user (name or id).",
                             show_default=False),
    expires_days: int = typer.Option(0, "--expires-days", help="Expire after N days (0: never)."),
    rpm: int = typer.Option(None, "--rpm", help="Requests per minute (0: unlimited; default: the setting).",
                            show_default=False),
    tokens_per_day: int = typer.Option(None, "--tokens-per-day", help="Tokens per UTC day (0: unlimited).",
                                       show_default=False),
    scope: list[str] = typer.Option(None, "--scope", help="Limit the key to this action (repeatable), e.g. "
                                    "apps:support for the support widget (a scoped key is a member key).",
                                    show_default=False),
    data_dir: Path = DataDirOption,
) -> None:
    """Create a key and print its secret once."""
    if role not in (None, "admin", "member"):
        fail(f"--role must be admin or member, not {role!r}.")
    if expires_days < 0:
        fail("--expires-days must be 0 or more.")
    unknown = [s for s in scope or () if s not in KEY_SCOPES]
    if unknown:  # named as the option, not as the API's 'scopes' field the same check would name
        fail(f"--scope must be one of: {', '.join(sorted(KEY_SCOPES))} (not {unknown[0]!r}).")
    with services_for(data_dir) as services:
        user_id = services.directory.find_user(user).id if user else None
        expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
        record, secret = services.keys.create_key(
            name, role=role, expires_at=expires, user_id=user_id,  # type: ignore[arg-type]
            rpm_limit=rpm, tokens_per_day_limit=tokens_per_day, scopes=scope or None,
        )
    owner = f" of user {user}" if user else ""
    console.print(f"Created {record.id} ({record.role}) for {esc(repr(record.name))}{esc(owner)}. "
                  "Secret (shown only now):", highlight=False)
    console.print(secret, highlight=False, soft_wrap=True)


@app.command("list")
def list_(
    user: str = typer.Option(None, "--user", "-u", help="Only this user's keys.", show_default=False),
    data_dir: Path = DataDirOption,
) -> None:
    """List keys (never their secrets)."""
    with services_for(data_dir) as services:
        user_id = services.directory.find_user(user).id if user else None
        records = services.keys.list_keys(user_id=user_id)
        names = {u.id: u.name for u in services.directory.list_users()}
    # "last used" (to the minute: it is written at most once a minute) shows a key still in use before a revoke.
    headers = ("id", "name", "user", "role", "prefix", "created", "expires", "revoked", "last used", "limits")
    rows = [(r.id, r.name, names.get(r.user_id or "", r.user_id or ""),
             r.role + (f" ({', '.join(r.scopes)} only)" if r.scopes is not None else ""), r.prefix,
             _when(r.created_at), _when(r.expires_at), _when(r.revoked_at), _when(r.last_used_at) or "never",
             _limits(r.rpm_limit, r.tokens_per_day_limit)) for r in records]
    if console.width < _TABLE_WIDTH:
        # Ten columns squeezed into a narrow terminal cut every value to "na…": one key a paragraph instead.
        for row in rows:
            console.print(f"[bold]{esc(row[0])}[/] {esc(row[1])}", highlight=False)
            for header, value in zip(headers[2:], row[2:], strict=True):
                if value:
                    console.print(f"  {header}: {esc(value)}", highlight=False)
        return
    table = Table(*headers[1:])
    table.columns.insert(0, Column("id", no_wrap=True))  # what revoke and set-limits take
    for row in rows:
        table.add_row(*cells(*row))
    console.print(table)


# Columns a terminal needs for the key table to show its values whole (narrower: one key a paragraph).
_TABLE_WIDTH = 150


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M") if ts else ""


def _limits(rpm: int | None, tokens_per_day: int | None) -> str:
    """A key's own quotas; "default" for the governance settings' (None), "unlimited" for 0."""
    if rpm is None and tokens_per_day is None:
        return "default"

    def one(n: int | None) -> str:
        return "default" if n is None else "unlimited" if n == 0 else f"{n:,}"

    return f"{one(rpm)} rpm, {one(tokens_per_day)} tokens/day"


@app.command("set-limits")
def set_limits(
    key_id: str = typer.Argument(..., help="The key id (key_…)."),
    rpm: int = typer.Option(None, "--rpm", help="Requests per minute (0: unlimited).", show_default=False),
    tokens_per_day: int = typer.Option(None, "--tokens-per-day", help="Tokens per UTC day (0: unlimited).",
                                       show_default=False),
    default: bool = typer.Option(False, "--default", help="Return both limits to the governance defaults."),
    data_dir: Path = DataDirOption,
) -> None:
    """Set a key's quotas; a limit not given keeps its current value."""
    with services_for(data_dir) as services:
        current = services.keys.get(key_id)
        new_rpm = None if default else (rpm if rpm is not None else current.rpm_limit)
        new_tpd = None if default else (tokens_per_day if tokens_per_day is not None
                                        else current.tokens_per_day_limit)
        record = services.keys.set_limits(key_id, rpm_limit=new_rpm, tokens_per_day_limit=new_tpd)
    console.print(f"{esc(record.id)}: rpm={record.rpm_limit if record.rpm_limit is not None else 'default'}, "
                  f"tokens/day={record.tokens_per_day_limit if record.tokens_per_day_limit is not None else 'default'}",
                  highlight=False)


@app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key id (key_…)."), data_dir: Path = DataDirOption) -> None:
    """Revoke a key; it stops working on the next request."""
    with services_for(data_dir) as services:
        services.keys.revoke(key_id)
    console.print(f"Revoked {esc(key_id)}.")
