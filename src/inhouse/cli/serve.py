"""`inhouse serve`: start the OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from inhouse.cli.common import (
    DataDirOption,
    console,
    current_probe,
    err_console,
    esc,
    fail,
    open_services,
    settings_from,
    translate_errors,
)
from inhouse.errors import InvalidRequest, StoreUnavailable, Unavailable

if TYPE_CHECKING:
    from inhouse.config import Settings
    from inhouse.deploy.systemd import Notifier
    from inhouse.hardware.probe import HardwareProbe
    from inhouse.services import Services

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        model: str = typer.Option(None, "--model", "-m", help="Model to load at start (default: settings)."),
        host: str = typer.Option(None, "--host", help="Bind address (default 127.0.0.1)."),
        port: int = typer.Option(None, "--port", "-p", help="Port (default 8000)."),
        allow_unauthenticated: bool = typer.Option(
            False, "--allow-unauthenticated", help="Serve without API keys; only on a loopback address."
        ),
        data_dir: Path = DataDirOption,
        log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
        idle_release_s: float = typer.Option(
            None, "--idle-release-s", min=0,
            help="Unload models (and the embedder) after this many idle seconds (memory and cores back); reload on "
            "the next request."),
        cluster: str = typer.Option(
            None, "--cluster", metavar="ADDRESS",
            help="Deploy the app to the Ray cluster at ADDRESS (`inhouse cluster up`) instead of serving here: the "
            "ingress on the head, one replica of each model (--model, models.preload) per machine."),
        node_ip: str = typer.Option("127.0.0.1", "--node-ip", help="With --cluster: this machine's address."),
    ) -> None:
        """Start the server. On an empty data directory an admin API key is created and printed once."""
        import uvicorn

        from inhouse.api.app import build_app
        from inhouse.api.connections import http_protocol
        from inhouse.deploy.systemd import Notifier

        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("psycopg.pool").setLevel(logging.NOTSET)  # the server's log keeps the pool's retries
        settings = settings_from(data_dir, host=host, port=port)
        if allow_unauthenticated:
            settings.server.allow_unauthenticated = True
        if model:
            settings.models.default = model
        if idle_release_s is not None:
            settings.models.idle_release_s = idle_release_s
        if settings.server.allow_unauthenticated and not is_loopback(settings.server.host):
            fail(f"--allow-unauthenticated is only allowed on a loopback address, not {settings.server.host}.")
        tls = tls_files(settings)  # checked before anything loads: a bad pair fails in a second, not after the model
        if cluster is not None:
            _serve_on_cluster(settings, cluster, node_ip)
            return
        # Bound before anything loads: a port in use fails in a second, not after the model; uvicorn is then given
        # this socket (listening starts when it serves).
        with translate_errors(settings.data_dir):
            sock = bind_port(settings.server.host, settings.server.port)
        settings.server.port = sock.getsockname()[1]  # --port 0: the one the system chose, in "Serving … at"
        notifier = Notifier()  # systemd's Type=notify (`inhouse service install`); nothing outside systemd
        with translate_errors(settings.data_dir):
            from inhouse.bootstrap import build_probe

            notifier.status("probing the hardware")
            # Before the services: the default model ("auto") and the weight path are chosen from its answer.
            probe = build_probe(settings)
            report = current_probe(probe)
            console.print(f"Hardware: {esc(report.cpu_model)}, {report.physical_cores} cores, "
                          f"{report.memory_total_bytes / 1e9:.0f} GB, {report.bandwidth_gb_s:.0f} GB/s. "
                          f"{esc(report.amx_verdict())}", highlight=False)
            services = _open_waiting_for_store(settings, notifier, probe)
            # What an earlier process kept while its store was away, then its requests that never ended (a crash,
            # a kill): their final record says so.
            taken = services.take_over_previous_runs()
            if taken.records:
                err_console.print(f"{taken.records} audit record(s) the previous run kept while its store was away "
                                  "are written now.")
            if taken.charges:
                err_console.print(f"{taken.charges} token charge(s) the previous run kept while its store was away "
                                  "are taken over.")
            if taken.interrupted:
                err_console.print(f"{len(taken.interrupted)} request(s) of the previous run (or command run(s) whose "
                                  "process is gone) were interrupted; recorded as such in the audit log.")
            secret = services.keys.ensure_admin_key()
            if secret:
                console.print(
                    "[bold]Created the first admin API key. It is shown only this once; store it now:[/]\n"
                    f"  {secret}\n"
                    "Create more with `inhouse keys create --name NAME`.",
                    highlight=False,
                )
            name = settings.models.default
            if services.default_model is not None:
                console.print(f"Default model: {esc(name)} ({esc(services.default_model.reason)}).", highlight=False)
            spec = services.registry.resolve(name)
            t0 = time.perf_counter()
            notifier.status(f"loading {spec.name}")
            with console.status(f"Loading {esc(spec.name)} ({spec.size_bytes / 1e6:.0f} MB, "
                                f"{esc(spec.quantization)})…"):
                services.registry.get_engine(name)
                for extra in settings.models.preload:
                    services.registry.get_engine(extra)
            console.print(f"Loaded {esc(spec.name)} in {time.perf_counter() - t0:.1f} s.")
            choice = services.weight_choices.get(spec.name)
            if choice is not None:
                console.print(f"Weight buffers: {choice.value} ({esc(choice.reason)})", highlight=False)
            _print_tuning(services, spec.sha256)
        auth = "OFF (loopback only)" if settings.server.allow_unauthenticated else "API key required"
        url = f"{'https' if tls else 'http'}://{settings.server.host}:{settings.server.port}"
        if tls is None and not is_loopback(settings.server.host):
            err_console.print(
                f"[bold yellow]warning:[/] plain HTTP on {esc(settings.server.host)}: API keys, prompts and answers "
                "cross the network unencrypted. Set server.tls_certfile and server.tls_keyfile, or bind 127.0.0.1 "
                "behind a TLS proxy.", highlight=False)
        console.print(f"Serving OpenAI-compatible API at {esc(url)}/v1 (auth: {auth}); data in "
                      f"{esc(settings.data_dir)}")
        app_ = build_app(services)
        services.residency.start()
        if settings.models.idle_release_s:
            console.print(f"Idle release: models are unloaded after {settings.models.idle_release_s:g} s "
                          "without requests and reloaded on the next one.")
        config = uvicorn.Config(app_, host=settings.server.host, port=settings.server.port,
                                log_level=log_level.lower(), timeout_graceful_shutdown=5,
                                timeout_keep_alive=int(max(1, settings.server.keep_alive_s)),
                                http=http_protocol(settings.server),
                                ssl_certfile=str(tls[0]) if tls else None, ssl_keyfile=str(tls[1]) if tls else None)
        try:
            _notifying_server(config, notifier, f"serving {name} at {url}",
                              drain=services.registry.close).run(sockets=[sock])
        finally:
            notifier.stopping()
            sock.close()
            services.close()
            err_console.print("stopped")


def bind_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not listening yet), as uvicorn binds one; a port in use is ``Unavailable``
    (exit 5), an address that is not this machine's or a port it may not use is bad input (exit 2)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart need not wait for TIME_WAIT
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise Unavailable(f"Port {port} on {host} is in use (another `inhouse serve`?): stop it, or choose "
                              "another with --port or server.port.") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise InvalidRequest(f"Cannot listen on {where}: ports below 1024 need privileges; choose another "
                                 "with --port or server.port.") from None
        raise InvalidRequest(f"Cannot listen on {where}: {exc.strerror or exc} (--host, server.host: an address "
                             "of this machine).") from None
    return sock


def tls_files(settings: Settings) -> tuple[Path, Path] | None:
    """``server.tls_certfile`` and ``tls_keyfile``, checked as a pair that loads (a half pair, a missing file, a key
    that is not the certificate's: one line and exit 2); None for plain HTTP."""
    import ssl

    cert, key = settings.server.tls_certfile, settings.server.tls_keyfile
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        fail("Set both server.tls_certfile and server.tls_keyfile for HTTPS, or neither for plain HTTP.")
    assert cert is not None and key is not None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        fail(f"TLS: no file {exc.filename}.")
    except (OSError, ssl.SSLError) as exc:
        fail(f"TLS: {cert} and {key} do not load as a certificate and its key ({exc}).")
    return cert, key


# Seconds before uvicorn's graceful stop (5 s) cancels what still runs, when those requests' generations are failed
# so that they end with an error and their audit record (a stream's final event, a 503).
DRAIN_BEFORE_S = 2.0

# Seconds between two attempts to reach a PostgreSQL store that is not up yet.
STORE_RETRY_S = 5.0


def _open_waiting_for_store(settings: Settings, notifier: Notifier, probe: HardwareProbe | None = None) -> Services:
    """The services, waiting up to ``store.connect_wait_s`` for a PostgreSQL server that cannot be reached yet (after
    a power cut both machines boot, and the database may come up last). Failing at once would have systemd restart
    the server every few seconds until its start limit stops it for good: an operator step after an ordinary
    reboot. Anything but an unreachable store fails at once."""
    deadline = time.monotonic() + settings.store.connect_wait_s
    attempt = 0
    while True:
        try:
            return open_services(settings, probe)
        except StoreUnavailable as exc:
            attempt += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            if attempt == 1 or attempt % 6 == 0:
                err_console.print(f"waiting for the database ({left:.0f} s more): {esc(exc.message)}", highlight=False)
            notifier.status(f"waiting for the database (attempt {attempt})")
            time.sleep(min(STORE_RETRY_S, left))


def _notifying_server_class() -> type:
    import uvicorn

    class NotifyingServer(uvicorn.Server):
        """uvicorn's server, telling systemd when it listens (``READY=1``) and that its event loop still turns
        (``WATCHDOG=1``, from a task on that loop: a stuck loop stops saying it)."""

        def __init__(self, config: uvicorn.Config, notifier: Notifier, status: str,
                     drain: Callable[[], None] | None = None) -> None:
            super().__init__(config)
            self._notifier = notifier
            self._status = status
            self._drain = drain
            self._pinger: asyncio.Task[None] | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.should_exit:  # the port could not be bound: uvicorn is stopping
                return
            self._notifier.ready(self._status)
            if self._notifier.watchdog_interval_s is not None:
                self._pinger = asyncio.create_task(self._ping(self._notifier.watchdog_interval_s))

        async def _ping(self, every_s: float) -> None:
            while True:
                self._notifier.watchdog()
                await asyncio.sleep(every_s)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """uvicorn raises a SIGTERM again once it has stopped, and with Python's default handler the process
            died there: `serve`'s own shutdown (kept audit records written, parse workers and databases closed,
            "stopped") never ran, and it exited -15. A SIGTERM is an ordinary stop: exit 0 after it. (Ctrl-C is
            raised again: KeyboardInterrupt, the shutdown, exit 130.)"""
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals[:] = [s for s in self._captured_signals if s != signal.SIGTERM]

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            self._notifier.stopping()
            if self._pinger is not None:
                self._pinger.cancel()
            drainer = asyncio.create_task(self._drain_late()) if self._drain is not None else None
            try:
                await super().shutdown(sockets)
            finally:
                if drainer is not None:
                    drainer.cancel()

        async def _drain_late(self) -> None:
            """What is still running shortly before uvicorn's grace period ends: its generations are failed (the
            engines closed: ``model_unloaded``), so each request ends as a crash would end it (a final SSE error
            event, a 503) and writes its final audit record, instead of being cancelled with neither."""
            await asyncio.sleep(max(0.0, (self.config.timeout_graceful_shutdown or 0) - DRAIN_BEFORE_S))
            if self.server_state.tasks and self._drain is not None:
                log.warning("stopping: %d request(s) still running; failing their generations",
                            len(self.server_state.tasks))
                await asyncio.to_thread(self._drain)

    return NotifyingServer


def _notifying_server(config: Any, notifier: Notifier, status: str, *,
                      drain: Callable[[], None] | None = None) -> Any:
    """A ``NotifyingServer`` (its class is built on first use: uvicorn is imported lazily, so `--help` is fast).
    ``drain``: called when requests are still running ``DRAIN_BEFORE_S`` before the graceful stop ends."""
    return _notifying_server_class()(config, notifier, status, drain)


def _serve_on_cluster(settings: Settings, address: str, node_ip: str) -> None:
    """Deploy the ingress and the model replicas to a cluster; the app keeps running there after this returns."""
    from inhouse.cli.cluster import check_cluster_from_cli, connect_from_cli
    from inhouse.cluster.app import ModelDeployment, deploy

    with translate_errors(settings.data_dir):
        check_cluster_from_cli(settings.data_dir, address)  # a readable token and a head that answers, first
        if settings.models.default == "auto":  # chosen from this (the head's) machine; replicas probe their own
            from inhouse.bootstrap import build_probe

            current_probe(build_probe(settings))
        services = open_services(settings)  # the ingress's data directory: migrated, first admin key
        try:
            secret = services.keys.ensure_admin_key()
            for name in dict.fromkeys([settings.models.default, *settings.models.preload]):
                services.registry.resolve(name, require_present=True)  # the ingress needs its template
        finally:
            services.close()
        if secret:
            console.print(f"[bold]Created the first admin API key (shown only this once):[/]\n  {secret}",
                          highlight=False)
        connect_from_cli(settings.data_dir, address, node_ip)
        models = [ModelDeployment(m) for m in dict.fromkeys([settings.models.default, *settings.models.preload])]
        with console.status(f"Deploying {esc(', '.join(m.model for m in models))} to {esc(address)}…"):
            host, port = deploy(settings, models)
    if (host, port) != (settings.server.host, settings.server.port):
        err_console.print(f"[bold yellow]warning:[/] the cluster's HTTP proxy already serves {esc(host)}:{port}, and "
                          "keeps that address while Serve runs on the head: "
                          f"{esc(settings.server.host)}:{settings.server.port} was not taken.", highlight=False)
    console.print(f"Serving at http://{esc(host)}:{port}/v1 through the cluster at {esc(address)}; "
                  "`inhouse cluster status` shows the replicas.", highlight=False)


def _print_tuning(services: Services, sha256: str | None) -> None:
    """Say whether a tuned profile is in effect (the log has the details: see models/tuning/profile.py): a valid
    profile of this CPU whose variant weights are gone was not applied, and is not said to be."""
    from inhouse.models.tuning.status import tuned_status

    status, message = tuned_status(services.profiles.match(sha256), services.registry, services.settings.engine,
                                   verify=True)
    if status == "applied":
        console.print(f"Applied {esc(message)}.", highlight=False)
    elif status != "none":
        err_console.print(f"[bold yellow]warning:[/] {esc(message)}", highlight=False)
