"""A real MariaDB Galera cluster of a few nodes on this machine, for tests of the shared store.

Debian's mariadb-server and galera-4 are enough: each node is a `mariadbd` with a data directory of its
own under one temporary folder, its own client port, group communication port (gcomm), IST port and SST
port, all on 127.0.0.1. The first node bootstraps the cluster (`--wsrep-new-cluster`); the others join it
and receive its state by rsync (`wsrep_sst_method = rsync`), one at a time. Start-up is kept short: a
small buffer pool and redo log, no performance schema, no name resolution. The nodes run as `mysql`, as
Debian's do: as root, the rsync daemon of a joiner's state transfer runs as nobody and cannot write its
data directory. The nodes keep Galera's default `wsrep_sync_wait = 0`: stacklab asks for causal reads on its
own sessions (store/database.py), and the tests prove it does.

`GaleraCluster.start()` returns once every node reports `wsrep_cluster_size` = the node count and
`wsrep_ready` = ON; `stop()` kills every `mariadbd` it started and removes the folder, whatever state the
cluster is in (used in a `finally`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
MARIADBD = Path("/usr/sbin/mariadbd")
START_TIMEOUT_S = 60.0
"""Longest wait for one node to come up and join (a bootstrap takes ~2 s here, a join by rsync ~5 s)."""

CONFIG = """[mysqld]
datadir = {datadir}
socket = {dir}/mysqld.sock
pid-file = {dir}/mysqld.pid
log-error = {dir}/error.log
port = {port}
bind-address = 127.0.0.1
skip-name-resolve
user = mysql
performance_schema = OFF
innodb_buffer_pool_size = 32M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 2
default_storage_engine = InnoDB
binlog_format = ROW
innodb_autoinc_lock_mode = 2
max_connections = 300
wsrep_on = ON
wsrep_provider = {provider}
wsrep_cluster_name = stacklab-test
wsrep_cluster_address = gcomm://{peers}
wsrep_node_name = node{index}
wsrep_node_address = 127.0.0.1:{gcomm}
wsrep_provider_options = "gmcast.listen_addr=tcp://127.0.0.1:{gcomm};ist.recv_addr=127.0.0.1:{ist};gcache.size=32M;pc.weight={weight}"
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:{sst}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    index: int
    dir: Path
    port: int = field(default_factory=_free_port)
    gcomm: int = field(default_factory=_free_port)
    ist: int = field(default_factory=_free_port)
    sst: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        """The SQLAlchemy URL stacklab takes for MariaDB (PyMySQL driver)."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            database=database,
            connect_timeout=2,
            autocommit=True,
        )

    def status(self, name: str) -> str | None:
        """A global status variable (`wsrep_cluster_size`, `wsrep_local_cert_failures`, ...)."""
        with self.connect() as connection, connection.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
            row = cursor.fetchone()
        return None if row is None else str(row[1])

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no error log)"


class GaleraCluster:
    """`size` nodes under a temporary folder of their own (see the module's docstring)."""

    def __init__(self, size: int = 2) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="stacklab-galera-"))
        self.root.chmod(0o755)  # the nodes run as mysql (see start)
        self.nodes = [Node(index, self.root / f"node{index}") for index in range(1, size + 1)]

    def start(self) -> None:
        peers = ",".join(f"127.0.0.1:{node.gcomm}" for node in self.nodes)
        for node in self.nodes:
            self._install(node, peers)
        for count, node in enumerate(self.nodes, start=1):  # one joiner at a time: one donor, one SST
            extra = ["--wsrep-new-cluster"] if node is self.nodes[0] else []
            with (node.dir / "stdout.log").open("wb") as out:
                node.process = subprocess.Popen(
                    [str(MARIADBD), f"--defaults-file={node.dir / 'my.cnf'}", *extra],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._wait(node, count)
        for node in self.nodes:
            self._wait(node, len(self.nodes))

    def _install(self, node: Node, peers: str) -> None:
        datadir = node.dir / "data"
        datadir.mkdir(parents=True)
        shutil.chown(node.dir, "mysql", "mysql")
        shutil.chown(datadir, "mysql", "mysql")
        (node.dir / "my.cnf").write_text(
            CONFIG.format(
                datadir=datadir,
                dir=node.dir,
                port=node.port,
                provider=PROVIDER,
                peers=peers,
                index=node.index,
                gcomm=node.gcomm,
                ist=node.ist,
                sst=node.sst,
                weight=2 if node is self.nodes[0] else 1,
            )
        )
        subprocess.run(
            [
                "mariadb-install-db",
                f"--defaults-file={node.dir / 'my.cnf'}",
                "--user=mysql",
                "--auth-root-authentication-method=normal",  # root@127.0.0.1, no password
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def _wait(self, node: Node, size: int) -> None:
        """Until the node is ready in a cluster of `size` nodes; its error log in the failure otherwise."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert node.process is not None
            if node.process.poll() is not None:
                raise RuntimeError(f"galera node{node.index} exited:\n{node.error_log()}")
            try:
                if node.status("wsrep_ready") == "ON" and node.status("wsrep_cluster_size") == str(size):
                    return
            except pymysql.err.MySQLError:
                pass  # not answering yet
            time.sleep(0.2)
        raise TimeoutError(f"galera node{node.index} not ready in a cluster of {size}:\n{node.error_log()}")

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.kill()
                node.process.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)
