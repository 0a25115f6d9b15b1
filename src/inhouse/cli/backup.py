"""`inhouse backup DIR` and `inhouse restore DIR`: an online, consistent copy of a data directory and its return.

See docs/operations.md. Both work on the files directly (like `inhouse audit verify`), so a backup runs while the
server serves, and a restore is done before the server is started on the restored directory.
"""

from __future__ import annotations

from pathlib import Path

import typer

from inhouse.cli.common import DataDirOption, console, err_console, esc, settings_from, translate_errors


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)


def backup(
    directory: Path = typer.Argument(..., help="New directory to write the backup to."),
    data_dir: Path = DataDirOption,
) -> None:
    """Back up every database, the audit key and head, the egress policy and tuned profiles (online: the server
    may keep serving), with a manifest of sha256 hashes. Model weights are not copied."""
    from inhouse.store.backup import backup_data_dir, require_embedded

    with translate_errors(data_dir):
        settings = settings_from(data_dir)
        require_embedded(settings.store.url, "backup")
        result = backup_data_dir(settings.data_dir, directory, policy_file=settings.governance.policy_file)
    head = result.audit_head
    console.print(f"Backed up {esc(settings.data_dir)} to {esc(result.path)}: {len(result.files)} files, "
                  f"{result.bytes / 1e6:.1f} MB in {result.seconds:.1f} s"
                  + (f"; audit log up to record {head['seq']}" if head else "") + ".", highlight=False)
    err_console.print("The backup holds audit.key: keep it as safe as the data directory itself.")


def restore(
    directory: Path = typer.Argument(..., help="A directory written by `inhouse backup`."),
    data_dir: Path = DataDirOption,
) -> None:
    """Restore a backup into an empty data directory, check every hash, then verify the audit chain and the
    knowledge index. Exit 1 if a check fails after the files are in place."""
    from inhouse.store.backup import require_embedded, restore_data_dir

    with translate_errors(data_dir):
        settings = settings_from(data_dir)
        require_embedded(settings.store.url, "restore")
        manifest = restore_data_dir(directory, settings.data_dir)
    console.print(f"Restored {len(manifest['files'])} files from {esc(directory)} (taken "
                  f"{esc(manifest.get('created_at', '?'))}) into {esc(settings.data_dir)}.", highlight=False)
    if manifest.get("policy_source") and settings.governance.policy_file is not None:
        err_console.print(f"The policy was restored to {esc(settings.data_dir / 'policy.toml')}; "
                          f"governance.policy_file points at {esc(settings.governance.policy_file)}.", highlight=False)
    from inhouse.cli.common import services_for

    with services_for(settings.data_dir) as services:
        verdict = services.audit.verify()
        check = services.kb.store.check() if services.kb is not None else None
    console.print(f"audit verify: {esc('ok' if verdict.ok else verdict.message)} ({verdict.records} records); "
                  f"kb check: {esc('consistent' if check is None or check.ok else check.problems)}", highlight=False)
    if not verdict.ok or (check is not None and not check.ok):
        raise typer.Exit(1)
