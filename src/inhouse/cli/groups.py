"""`inhouse groups …`: departments and teams; knowledge collections are shared with groups."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from inhouse.cli.common import DataDirOption, cells, console, esc, services_for

app = typer.Typer(no_args_is_help=True)


@app.command("add")
def add(name: str = typer.Argument(..., help="Group name, e.g. finance."), data_dir: Path = DataDirOption) -> None:
    """Create a group."""
    with services_for(data_dir) as services:
        group = services.directory.create_group(name)
    console.print(f"Created group {group.id} {esc(repr(group.name))}.", highlight=False)


@app.command("list")
def list_(data_dir: Path = DataDirOption) -> None:
    """List groups with their members."""
    with services_for(data_dir) as services:
        rows = [(g, [u.name for u in services.directory.members(g.id)]) for g in services.directory.list_groups()]
    table = Table("id", "name", "members")
    for g, members in rows:
        table.add_row(*cells(g.id, g.name, ", ".join(members)))
    console.print(table)


@app.command("remove")
def remove(group: str = typer.Argument(..., help="Group name or id."), data_dir: Path = DataDirOption) -> None:
    """Delete a group (its members lose what was shared with it on their next request)."""
    with services_for(data_dir) as services:
        record = services.directory.find_group(group)
        services.directory.delete_group(record.id)
    console.print(f"Removed group {esc(record.name)}.", highlight=False)


@app.command("add-member")
def add_member(
    group: str = typer.Argument(..., help="Group name or id."),
    user: str = typer.Argument(..., help="User name or id."),
    data_dir: Path = DataDirOption,
) -> None:
    """Add a user to a group."""
    with services_for(data_dir) as services:
        g, u = services.directory.find_group(group), services.directory.find_user(user)
        added = services.directory.add_member(g.id, u.id)
    console.print(f"{esc(u.name)} {'added to' if added else 'is already in'} {esc(g.name)}.", highlight=False)


@app.command("remove-member")
def remove_member(
    group: str = typer.Argument(..., help="Group name or id."),
    user: str = typer.Argument(..., help="User name or id."),
    data_dir: Path = DataDirOption,
) -> None:
    """Remove a user from a group (effective on their next request)."""
    with services_for(data_dir) as services:
        g, u = services.directory.find_group(group), services.directory.find_user(user)
        services.directory.remove_member(g.id, u.id)
    console.print(f"{esc(u.name)} removed from {esc(g.name)}.", highlight=False)
