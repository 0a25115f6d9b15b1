"""``LocalCluster``: a head and further machines simulated in one process tree (``ray.cluster_utils.Cluster``), for
the tests and the benchmark. Each simulated machine has its own inhouse data directory (its own tuned profiles and
model cache), one CPU as far as Ray counts, a small object store and no dashboard.

Ray processes are stopped by PID at the end: those below this process that were not there before ``start``. Ray's
files (session logs, sockets, spilled objects) go to a temporary directory of this cluster's own,
``<tmp>/inhouse-ray-<uid>-<random>`` (not the default one every Ray on the machine shares), removed once its
processes are stopped.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from inhouse.cluster.app import INGRESS_RESOURCE, NODE_RESOURCE
from inhouse.cluster.processes import descendants, stop_pids
from inhouse.errors import InvalidRequest

# Ray in a sandbox: no telemetry, and no rewriting of 127.0.0.1 to an outbound address that cannot be reached.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_args(data_dir: Path, *, head: bool, object_store_mb: int, env: dict[str, str] | None = None,
              temp_dir: Path | None = None) -> dict[str, Any]:
    resources = {NODE_RESOURCE: 1.0, **({INGRESS_RESOURCE: 1.0} if head else {})}
    args: dict[str, Any] = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "resources": resources,
                            "object_store_memory": object_store_mb * 1024 * 1024, "include_dashboard": False,
                            "env_vars": {**(env or {}), "INHOUSE_DATA_DIR": str(data_dir), **RAY_ENV}}
    if head:  # Ray still starts a minimal dashboard process (state API): not on its fixed default port
        args["dashboard_port"] = free_port()
    if temp_dir is not None:  # the head's; the other nodes and the driver take the head's
        args["temp_dir"] = str(temp_dir)
    return args


class LocalCluster:
    """``start()`` brings up one node per data directory (the first is the head) and connects this process. ``env``:
    variables of every node's processes (``INHOUSE_*`` settings of the machines, e.g. idle release)."""

    def __init__(self, data_dirs: list[Path], *, object_store_mb: int = 80, env: dict[str, str] | None = None
                 ) -> None:
        if not data_dirs:
            raise InvalidRequest("A cluster needs at least one node.")
        self._dirs = data_dirs
        self._store_mb = object_store_mb
        self._env = env
        self._cluster: Any = None
        self._before: set[int] = set()
        self.nodes: list[Any] = []
        self.temp_dir: Path | None = None  # Ray's files while the cluster runs

    @property
    def address(self) -> str:
        return str(self._cluster.address)

    def start(self) -> LocalCluster:
        os.environ.update(RAY_ENV)  # for the nodes' processes, and for this one if Ray is not imported yet
        import ray
        import ray._private.ray_constants as ray_constants
        from ray.cluster_utils import Cluster

        # Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when first imported; in a process that imported it
        # earlier (a test session) 127.0.0.1 would still be rewritten to the unreachable outbound address and the
        # driver would wait for its GCS forever. The constant is looked up at call time, so set it here too.
        ray_constants.ENABLE_RAY_CLUSTER = False

        self._before = set(descendants(os.getpid()))
        # Short: Ray's Unix sockets live below it (a socket path has at most 107 bytes).
        self.temp_dir = Path(tempfile.mkdtemp(prefix=f"inhouse-ray-{os.getuid()}-"))
        try:
            self._cluster = Cluster(initialize_head=True,
                                    head_node_args=node_args(self._dirs[0], head=True, object_store_mb=self._store_mb,
                                                             env=self._env, temp_dir=self.temp_dir))
            self.nodes = [self._cluster.head_node]
            for d in self._dirs[1:]:
                self.nodes.append(self._cluster.add_node(**node_args(d, head=False, object_store_mb=self._store_mb,
                                                                     env=self._env)))
            self._cluster.wait_for_nodes()
            ray.init(address=self._cluster.address, logging_level=logging.WARNING, log_to_driver=False)
        except BaseException:  # a node or the driver did not come up: nothing of ours is left running
            self.stop()
            raise
        return self

    def node_id(self, index: int) -> str:
        return str(self.nodes[index].node_id)

    def stop(self) -> None:
        import ray

        try:
            from ray import serve

            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            if self._cluster is not None:
                self._cluster.shutdown()
                self._cluster = None
            stop_pids([p for p in descendants(os.getpid()) if p not in self._before], timeout_s=5.0)
            if self.temp_dir is not None:  # after the processes that write there are gone
                shutil.rmtree(self.temp_dir, ignore_errors=True)
