"""`inhouse users …`: people who hold API keys (roles admin|member; disabling stops their keys at once)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from inhouse.cli.common import DataDirOption, cells, console, esc, services_for

app = typer.Typer(no_args_is_help=True)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M") if ts else ""


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Login-like name, e.g. alice or alice@example.com."),
    display_name: str = typer.Option(None, "--display-name", "-d", help="Full name (defaults to NAME)."),
    role: str = typer.Option("member", "--role", help="admin or member."),
    data_dir: Path = DataDirOption,
) -> None:
    """Create a user. Then: `inhouse keys create --user NAME`."""
    with services_for(data_dir) as services:
        user = services.directory.create_user(name, display_name=display_name, role=role)
    console.print(f"Created user {user.id} {esc(repr(user.name))} ({user.role}).", highlight=False)


@app.command("list")
def list_(data_dir: Path = DataDirOption) -> None:
    """List users with their groups."""
    with services_for(data_dir) as services:
        rows = [(u, [g.name for g in services.directory.groups_of(u.id)])
                for u in services.directory.list_users()]
    table = Table("id", "name", "display name", "role", "disabled", "groups", "created")
    for u, groups in rows:
        table.add_row(*cells(u.id, u.name, u.display_name, u.role, "yes" if u.disabled else "", ", ".join(groups),
                             _when(u.created_at)))
    console.print(table)


@app.command("set-role")
def set_role(
    user: str = typer.Argument(..., help="User name or id."),
    role: str = typer.Argument(..., help="admin or member."),
    data_dir: Path = DataDirOption,
) -> None:
    """Change a user's role (their keys follow on the next request, never above their own role)."""
    with services_for(data_dir) as services:
        record = services.directory.find_user(user)
        updated = services.directory.update_user(record.id, role=role)
    console.print(f"{esc(updated.name)} is now {esc(updated.role)}.", highlight=False)


@app.command("disable")
def disable(
    user: str = typer.Argument(..., help="User name or id."),
    enable: bool = typer.Option(False, "--enable", help="Enable the user again instead."),
    data_dir: Path = DataDirOption,
) -> None:
    """Disable a user: all their keys stop working on the next request (reversible with --enable)."""
    with services_for(data_dir) as services:
        record = services.directory.find_user(user)
        updated = services.directory.update_user(record.id, disabled=not enable)
    console.print(f"{esc(updated.name)} is {'disabled' if updated.disabled else 'enabled'}.", highlight=False)


@app.command("remove")
def remove(
    user: str = typer.Argument(..., help="User name or id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    data_dir: Path = DataDirOption,
) -> None:
    """Delete a user, their group memberships, and revoke all their keys."""
    with services_for(data_dir) as services:
        record = services.directory.find_user(user)
        if not yes and not typer.confirm(f"Delete {record.name} ({record.id}) and revoke their keys?"):
            raise typer.Exit(1)
        services.directory.delete_user(record.id)
    console.print(f"Removed {esc(record.name)}; their keys are revoked.", highlight=False)
