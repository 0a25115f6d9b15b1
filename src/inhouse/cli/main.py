"""The `inhouse` command. Each command group lives in its own module; heavy imports happen inside commands
so that `inhouse --help` is instant."""

from __future__ import annotations

import typer

from inhouse.cli import audit as audit_cli
from inhouse.cli import backup as backup_cli
from inhouse.cli import chat, keys, models, serve
from inhouse.cli import cluster as cluster_cli
from inhouse.cli import doctor as doctor_cli
from inhouse.cli import groups as groups_cli
from inhouse.cli import image as image_cli
from inhouse.cli import kb as kb_cli
from inhouse.cli import minutes as minutes_cli
from inhouse.cli import outline as outline_cli
from inhouse.cli import schedule as schedule_cli
from inhouse.cli import service as service_cli
from inhouse.cli import status as status_cli
from inhouse.cli import store as store_cli
from inhouse.cli import support as support_cli
from inhouse.cli import tune as tune_cli
from inhouse.cli import users as users_cli
from inhouse.cli.common import quiet_library_logs

app = typer.Typer(
    name="inhouse",
    help="Private AI on the CPUs you already own: an OpenAI-compatible llama.cpp server and tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
serve.register(app)
chat.register(app)
kb_cli.register(app)
tune_cli.register(app)
status_cli.register(app)
doctor_cli.register(app)
support_cli.register(app)
minutes_cli.register(app)
outline_cli.register(app)
backup_cli.register(app)
app.add_typer(models.app, name="models", help="List, pull and register models.")
app.add_typer(keys.app, name="keys", help="Create, list and revoke API keys.")
app.add_typer(image_cli.app, name="image", help="Build, verify and install air-gapped bundles.")
app.add_typer(users_cli.app, name="users", help="Add, list, change and remove users.")
app.add_typer(groups_cli.app, name="groups", help="Groups (departments) and their members.")
app.add_typer(audit_cli.app, name="audit", help="Verify, export and report on the tamper-evident audit log.")
app.add_typer(cluster_cli.app, name="cluster", help="Cluster mode: start, join, inspect and stop Ray nodes.")
app.add_typer(schedule_cli.app, name="schedule", help="Your calendar: events, free slots, trips, .ics, chat.")
app.add_typer(service_cli.app, name="service", help="Keep the server running as a systemd service (restarted after "
              "a crash, started at boot).")
app.add_typer(store_cli.app, name="store", help="Where data is kept: copy an embedded install into PostgreSQL.")


def main() -> None:
    quiet_library_logs()
    app()


if __name__ == "__main__":
    main()
