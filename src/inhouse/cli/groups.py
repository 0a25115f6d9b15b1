"""`inhouse groups …`: departments and teams; knowledge collections are shared with groups."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from inhouse.cli.common import DataDirOption, console, open_services, settings_from, translate_errors

app = typer.Typer(no_args_is_help=True)


@app.command("add")
def add(name: str = typer.Argument(..., help="Group name, e.g. finance."), data_dir: Path = DataDirOption) -> None:
    """Create a group."""
    with translate_errors():
        services = open_services(settings_from(data_dir))
        try:
            group = services.directory.create_group(name)
        finally:
            services.close()
    console.print(f"Created group {group.id} {group.name!r}.", highlight=False)


@app.command("list")
def list_(data_dir: Path = DataDirOption) -> None:
    """List groups with their members."""
    with translate_errors():
        services = open_services(settings_from(data_dir))
        try:
            rows = [(g, [u.name for u in services.directory.members(g.id)]) for g in services.directory.list_groups()]
        finally:
            services.close()
    table = Table("id", "name", "members")
    for g, members in rows:
        table.add_row(g.id, g.name, ", ".join(members))
    console.print(table)


@app.command("remove")
def remove(group: str = typer.Argument(..., help="Group name or id."), data_dir: Path = DataDirOption) -> None:
    """Delete a group (its members lose what was shared with it on their next request)."""
    with translate_errors():
        services = open_services(settings_from(data_dir))
        try:
            record = services.directory.find_group(group)
            services.directory.delete_group(record.id)
        finally:
            services.close()
    console.print(f"Removed group {record.name}.", highlight=False)


@app.command("add-member")
def add_member(
    group: str = typer.Argument(..., help="Group name or id."),
    user: str = typer.Argument(..., help="User name or id."),
    data_dir: Path = DataDirOption,
) -> None:
    """Add a user to a group."""
    with translate_errors():
        services = open_services(settings_from(data_dir))
        try:
            g, u = services.directory.find_group(group), services.directory.find_user(user)
            added = services.directory.add_member(g.id, u.id)
        finally:
            services.close()
    console.print(f"{u.name} {'added to' if added else 'is already in'} {g.name}.", highlight=False)


@app.command("remove-member")
def remove_member(
    group: str = typer.Argument(..., help="Group name or id."),
    user: str = typer.Argument(..., help="User name or id."),
    data_dir: Path = DataDirOption,
) -> None:
    """Remove a user from a group (effective on their next request)."""
    with translate_errors():
        services = open_services(settings_from(data_dir))
        try:
            g, u = services.directory.find_group(group), services.directory.find_user(user)
            services.directory.remove_member(g.id, u.id)
        finally:
            services.close()
    console.print(f"{u.name} removed from {g.name}.", highlight=False)
