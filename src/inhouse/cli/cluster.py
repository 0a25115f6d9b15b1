"""`inhouse cluster up | join | status | down`: machines of a Ray Serve cluster (cluster mode, docs/scale-out.md).

`up` starts the head on this machine, `join ADDRESS` adds this machine, `down` stops this machine's node (our own
processes, by PID; never `ray stop`). `status` connects as a driver and shows the machines and each model's
replicas. The app itself is deployed by `inhouse serve --cluster ADDRESS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.table import Table

from inhouse.cli.common import DataDirOption, cells, console, err_console, esc, settings_from, translate_errors

if TYPE_CHECKING:
    from inhouse.cluster.status import ModelView

app = typer.Typer(no_args_is_help=True)

NodeIpOption = typer.Option("127.0.0.1", "--node-ip", help="This machine's address as the other machines reach it.")
NumCpusOption = typer.Option(None, "--num-cpus", min=0, help="Cores Ray may schedule here (default: all).")
TokenOption = typer.Option(
    None, "--token-file", help="Ray auth token file (default: <data-dir>/cluster/auth_token, written by `up`).")
ForegroundOption = typer.Option(
    False, "--foreground", help="Run the node in this process until it ends (what `inhouse service install "
    "--cluster-head/--cluster-join` runs under systemd): Ray's output here, stopped by SIGTERM or Ctrl-C.")


def _token(data_dir: Path, token_file: Path | None, *, create: bool = False) -> Path:
    from inhouse.cluster.nodes import default_token_file, ensure_token

    path = token_file or default_token_file(data_dir)
    return ensure_token(path) if create else path


@app.command()
def up(
    port: int = typer.Option(6379, "--port", min=1, max=65535, help="Port of the head's Ray control service."),
    node_ip: str = NodeIpOption,
    num_cpus: int = NumCpusOption,
    token_file: Path = TokenOption,
    foreground: bool = ForegroundOption,
    data_dir: Path = DataDirOption,
) -> None:
    """Start the head of a cluster on this machine (Ray token authentication on)."""
    from inhouse.cluster.nodes import start_node

    settings = settings_from(data_dir)
    with translate_errors(settings.data_dir):
        token = _token(settings.data_dir, token_file, create=True)
        if foreground:
            _foreground(settings.data_dir, head=True, port=port, node_ip=node_ip, num_cpus=num_cpus,
                        token_file=token)
        record = start_node(settings.data_dir, head=True, port=port, node_ip=node_ip, num_cpus=num_cpus,
                            token_file=token)
    where = esc(record.address)
    console.print(f"Head started (pid {record.pid}) at {where}; token in {esc(token)} (mode 0600).\n"
                  f"  Other machines: copy the token, then `inhouse cluster join {where} --token-file FILE`\n"
                  f"  Deploy the app: `inhouse serve --cluster {where}`", highlight=False)


@app.command()
def join(
    address: str = typer.Argument(..., help="The head's address (host:port), as `inhouse cluster up` printed it."),
    node_ip: str = NodeIpOption,
    num_cpus: int = NumCpusOption,
    token_file: Path = TokenOption,
    foreground: bool = ForegroundOption,
    data_dir: Path = DataDirOption,
) -> None:
    """Add this machine to a cluster (its model replicas use this machine's model cache and tuned profiles)."""
    from inhouse.cluster.nodes import start_node

    settings = settings_from(data_dir)
    with translate_errors(settings.data_dir):
        if foreground:
            _foreground(settings.data_dir, head=False, address=address, node_ip=node_ip, num_cpus=num_cpus,
                        token_file=_token(settings.data_dir, token_file))
        record = start_node(settings.data_dir, head=False, address=address, node_ip=node_ip, num_cpus=num_cpus,
                            token_file=_token(settings.data_dir, token_file))
    console.print(f"Joined {esc(address)} (pid {record.pid}).", highlight=False)


@app.command()
def down(data_dir: Path = DataDirOption) -> None:
    """Stop this machine's node: the processes `up` or `join` started, by PID."""
    from inhouse.cluster.nodes import stop_node

    settings = settings_from(data_dir)
    with translate_errors(settings.data_dir):
        record = stop_node(settings.data_dir)
    console.print(f"Stopped the {record.role} node (pid {record.pid}).", highlight=False)


@app.command()
def status(
    address: str = typer.Option(None, "--address", help="The cluster (default: the node started from this data dir)."),
    node_ip: str = NodeIpOption,
    token_file: Path = TokenOption,
    data_dir: Path = DataDirOption,
) -> None:
    """Machines, replicas per model (where, how busy, prefix-cache hit rate, tuned profile) and queue depth, and the
    Embedder's replicas (what each embedded)."""
    from inhouse.cluster.status import hit_rate, read_status

    settings = settings_from(data_dir)
    with translate_errors(settings.data_dir):
        _connect(settings.data_dir, address, node_ip, token_file)
        view = read_status()
    nodes = Table("node", "address", "alive", "role", "CPUs")
    for n in view.nodes:
        nodes.add_row(*cells(n.node_id[:12], n.address, "yes" if n.alive else "no", "head" if n.head else "worker",
                             f"{n.cpus:g}"))
    console.print(nodes)
    console.print(f"app: {esc(view.app_status)}", highlight=False)
    replicas = Table("model", "replica", "node", "running", "waiting", "served", "prefix hits", "profile")
    for m in view.models:
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(m.replicas.items())) or "0 replicas"
        console.print(f"{esc(m.model)}: {esc(m.status)}, {esc(states)}, queue depth {m.queue_depth}"
                      f"{_waiting(m, view.machines)}", highlight=False)
        for r in m.per_replica:
            replicas.add_row(*cells(m.model, r["replica"], str(r["node_id"])[:12], r["running"], r["waiting"],
                                    r["served"], f"{hit_rate(r):.0%}", str(r["profile"])[:40]))
    console.print(replicas)
    if view.embedder is not None:
        e = view.embedder
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(e.replicas.items())) or "0 replicas"
        console.print(f"embedder: {esc(e.status)}, {esc(states)}{_waiting(e, view.machines)}", highlight=False)
        embedders = Table("embedder", "replica", "node", "calls", "passages", "queries")
        for r in e.per_replica:
            embedders.add_row(*cells(r["name"], r["replica"], str(r["node_id"])[:12], r["calls"], r["passages"],
                                     r["queries"]))
        console.print(embedders)


def _waiting(m: ModelView, machines: int) -> str:
    n = m.waiting_for_machines(machines)
    return (f" ({n} waiting for a machine to join: one replica per machine, {machines} up)" if n else "")


def _foreground(data_dir: Path, **node: Any) -> NoReturn:
    """``--foreground``: the node in this process until it ends; under systemd, ``READY=1`` once it is up."""
    from inhouse.cluster.nodes import NodeRecord, run_node
    from inhouse.deploy.systemd import Notifier

    notifier = Notifier()

    def ready(record: NodeRecord) -> None:
        err_console.print(f"The {record.role} node is up (pid {record.pid}) at {esc(record.address)}.", highlight=False)
        notifier.ready(f"{record.role} node at {record.address}")

    raise typer.Exit(run_node(data_dir, on_ready=ready, **node))


def _target(data_dir: Path, address: str | None, token_file: Path | None) -> tuple[str, Path]:
    """The cluster to reach (``address`` or that of this data directory's node) and the token file to present."""
    from inhouse.cluster.nodes import read_record
    from inhouse.errors import NotFound

    record = read_record(data_dir)
    if address is None:
        if record is None:
            raise NotFound("No cluster address given and no node was started from this data directory.")
        address = record.address
    token = token_file or (Path(record.token_file) if record and record.token_file else _token(data_dir, None))
    return address, token


def _connect(data_dir: Path, address: str | None, node_ip: str, token_file: Path | None) -> None:
    """Connect to ``address`` or to the cluster of this data directory's node, with its token."""
    from inhouse.cluster.nodes import connect

    address, token = _target(data_dir, address, token_file)
    connect(address, node_ip=node_ip, token_file=token)


def check_cluster_from_cli(data_dir: Path, address: str, token_file: Path | None = None) -> None:
    """For `inhouse serve --cluster`, before it changes anything: the token file can be read (``NotFound``) and the
    head's port answers (``Unavailable``)."""
    from inhouse.cluster.nodes import check_reachable, check_token_file

    address, token = _target(data_dir, address, token_file)
    check_token_file(token)
    check_reachable(address)


def connect_from_cli(data_dir: Path, address: str, node_ip: str = "127.0.0.1", token_file: Path | None = None
                     ) -> None:
    """For `inhouse serve --cluster`."""
    _connect(data_dir, address, node_ip, token_file)
