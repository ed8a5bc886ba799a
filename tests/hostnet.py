"""Hosts of their own for the tests and benchmarks: Linux network namespaces joined by a switch that gives the
links latency, jitter and loss, and can cut any two hosts apart.

This machine's kernel has no netem (``CONFIG_NET_SCH_NETEM`` is off, as are prio and every other delaying qdisc;
``tc qdisc add ... netem`` answers "Specified qdisc kind is unknown"), so the network between the hosts is the
switch process below (``python -m tests.hostnet``), the way emulators such as Mininet's user switch work: every host
has a TAP device in its namespace, and the switch forwards each Ethernet frame to the host it is for after holding
it for half the round trip (plus or minus half the jitter), drops it at the loss rate, and drops everything between
two hosts that are cut apart, in both directions. Frames between two hosts keep their order, as on a wire.
The test process itself is the "client" host: its TAP stays in the root namespace.

Each server runs inside its host's namespace (``Network.start``), on the host's own address, so a worker reaches
PostgreSQL at 10.x.y.z:5432 across the switch, never over loopback.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import ipaddress
import json
import os
import random
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TUNSETIFF, _IFF_TAP, _IFF_NO_PI = 0x400454CA, 0x0002, 0x1000
#: large frames: a photo crosses in a few of them, so the switch's per-frame cost stays small
MTU = 65000


# -- the switch (its own process: its timing is not held up by the test's threads) ------------------------------


def _open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TAP | _IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


@dataclass
class _Switch:
    taps: dict[str, int]  # host name -> its TAP's file descriptor
    rtt_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    cuts: set[frozenset[str]] = field(default_factory=set)
    learned: dict[bytes, str] = field(default_factory=dict)  # MAC -> host
    due: list[tuple[float, int, str, str, bytes]] = field(default_factory=list)  # (time, seq, from, to, frame)
    last_due: dict[tuple[str, str], float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"forwarded": 0, "lost": 0, "cut": 0})
    seq: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(35))

    def command(self, line: str) -> dict:
        order = json.loads(line)
        op = order["op"]
        if op == "shape":
            self.rtt_s, self.jitter_s = order["rtt_ms"] / 1000, order["jitter_ms"] / 1000
            self.loss = order["loss"]
        elif op in ("cut", "heal"):
            pair = frozenset((order["a"], order["b"]))
            (self.cuts.add if op == "cut" else self.cuts.discard)(pair)
        return {"ok": True, **self.counts}

    def receive(self, source: str, frame: bytes, now: float) -> None:
        if len(frame) < 14:
            return
        self.learned[frame[6:12]] = source
        target = self.learned.get(frame[:6])
        targets = [target] if target is not None else [name for name in self.taps if name != source]
        for destination in targets:
            if destination == source:
                continue
            if frozenset((source, destination)) in self.cuts:
                self.counts["cut"] += 1
                continue
            if self.loss and self.rng.random() < self.loss:
                self.counts["lost"] += 1
                continue
            if not self.rtt_s and not self.jitter_s:
                self.send(destination, frame)
                continue
            one_way = max(0.0, (self.rtt_s + self.rng.uniform(-self.jitter_s, self.jitter_s)) / 2)
            link = (source, destination)
            when = max(now + one_way, self.last_due.get(link, 0.0))  # a wire keeps the frames' order
            self.last_due[link] = when
            self.seq += 1
            heapq.heappush(self.due, (when, self.seq, source, destination, frame))

    def send(self, destination: str, frame: bytes) -> None:
        with contextlib.suppress(OSError):  # a host whose link is down (powered off) takes nothing
            os.write(self.taps[destination], frame)
            self.counts["forwarded"] += 1

    def deliver_due(self, now: float) -> None:
        while self.due and self.due[0][0] <= now:
            _, _, source, destination, frame = heapq.heappop(self.due)
            if frozenset((source, destination)) in self.cuts:  # cut while on the way
                self.counts["cut"] += 1
                continue
            self.send(destination, frame)

    def serve(self) -> None:
        selector = selectors.DefaultSelector()
        for name, fd in self.taps.items():
            selector.register(fd, selectors.EVENT_READ, name)
        selector.register(sys.stdin, selectors.EVENT_READ, None)
        print(json.dumps({"ok": True}), flush=True)
        while True:
            timeout = max(0.0, self.due[0][0] - time.monotonic()) if self.due else None
            for key, _ in selector.select(timeout):
                if key.data is None:
                    line = sys.stdin.readline()
                    if not line:
                        return  # the test ended: the TAPs go with this process
                    print(json.dumps(self.command(line)), flush=True)
                    continue
                now = time.monotonic()
                while True:
                    try:
                        frame = os.read(key.fd, MTU + 100)
                    except (BlockingIOError, OSError):
                        break
                    self.receive(key.data, frame, now)
            self.deliver_due(time.monotonic())


# -- the hosts (the test's side) ---------------------------------------------------------------------------------


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 under 10.200.0.0/16 that no interface of this machine uses (another run's switch may be up)."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    for third in random.Random(os.getpid()).sample(range(1, 255), 254):
        subnet = ipaddress.IPv4Network(f"10.200.{third}.0/24")
        if f"10.200.{third}." not in used:
            return subnet
    raise RuntimeError("no free 10.200.x.0/24 for the test hosts")


class Network:
    """Hosts as network namespaces on one switch. ``hosts``: their names; "client" is always added and is this
    process' own (root) namespace. ``start`` runs a process on a host; ``power_off`` kills a host's processes and
    takes its link down; ``shape``, ``cut`` and ``heal`` change the network."""

    def __init__(self, hosts: list[str], log_dir: Path) -> None:
        self.log_dir = log_dir
        self.tag = f"pm{os.getpid() % 100000}"
        subnet = _free_subnet()
        self.names = ["client", *hosts]
        self.address = {name: str(subnet.network_address + 1 + i) for i, name in enumerate(self.names)}
        self.namespace = {name: f"{self.tag}-{name}" for name in hosts}
        self.tap = {name: f"{self.tag}t{i}" for i, name in enumerate(self.names)}
        self.processes: dict[str, list[subprocess.Popen]] = {name: [] for name in self.names}
        self._switch = subprocess.Popen(
            [sys.executable, "-m", "tests.hostnet", *(f"{name}={self.tap[name]}" for name in self.names)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            self._answer()
            for name in self.names:
                self._plug(name, subnet.prefixlen)
        except BaseException:
            self.close()
            raise

    def _answer(self) -> dict:
        assert self._switch.stdout is not None
        line = self._switch.stdout.readline()
        if not line:
            raise RuntimeError(f"the test switch exited with {self._switch.wait()}")
        return json.loads(line)

    def _in(self, name: str) -> list[str]:
        """The command prefix that runs in host ``name``'s namespace (nothing for the client)."""
        return ["ip", "netns", "exec", self.namespace[name]] if name in self.namespace else []

    def _plug(self, name: str, prefix: int) -> None:
        tap = self.tap[name]
        if name in self.namespace:
            _sh("ip", "netns", "add", self.namespace[name])
            _sh("ip", "link", "set", tap, "netns", self.namespace[name])
            _sh(*self._in(name), "ip", "link", "set", "lo", "up")
            _sh(*self._in(name), "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        else:
            _sh("sysctl", "-qw", f"net.ipv6.conf.{tap}.disable_ipv6=1")
        _sh(*self._in(name), "ip", "link", "set", tap, "mtu", str(MTU), "up")
        _sh(*self._in(name), "ip", "addr", "add", f"{self.address[name]}/{prefix}", "dev", tap)

    def _order(self, **order: object) -> dict:
        assert self._switch.stdin is not None
        self._switch.stdin.write(json.dumps(order) + "\n")
        self._switch.stdin.flush()
        return self._answer()

    def shape(self, rtt_ms: float = 0.0, jitter_ms: float = 0.0, loss: float = 0.0) -> dict:
        """Every round trip between two hosts takes ``rtt_ms`` +- ``jitter_ms``; each frame is lost with
        probability ``loss``."""
        return self._order(op="shape", rtt_ms=rtt_ms, jitter_ms=jitter_ms, loss=loss)

    def cut(self, a: str, b: str) -> None:
        """Nothing passes between hosts ``a`` and ``b``, either way (connections stay open, packets vanish)."""
        self._order(op="cut", a=a, b=b)

    def heal(self, a: str, b: str) -> None:
        self._order(op="heal", a=a, b=b)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None, *, user: str | None = None,
              log: str | None = None, cwd: Path | None = None) -> subprocess.Popen:  # fmt: skip
        """Run ``argv`` on host ``name`` (as ``user``), its output to ``log`` in the log folder."""
        prefix = [*self._in(name), *(["runuser", "-u", user, "--"] if user else [])]
        out = open(self.log_dir / (log or f"{name}.log"), "ab")  # noqa: SIM115 (open while the process runs)
        process = subprocess.Popen(
            [*prefix, *argv], env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=cwd,
        )  # fmt: skip
        self.processes[name].append(process)
        return process

    def wait_for_port(self, name: str, port: int, timeout_s: float = 60.0) -> None:
        """Until host ``name`` accepts TCP connections on ``port`` (asked from the client, across the switch)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for process in self.processes[name]:
                if process.poll() is not None:
                    raise RuntimeError(f"a process on {name} exited ({process.returncode}); see {self.log_dir}")
            with contextlib.suppress(OSError), socket.create_connection((self.address[name], port), timeout=1):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name}:{port} did not answer in {timeout_s:.0f} s; see {self.log_dir}")

    def round_trip_ms(self, name: str, port: int, times: int = 20) -> list[float]:
        """TCP connects from the client to ``name`` (a connect is one round trip), in milliseconds."""
        taken = []
        for _ in range(times):
            started = time.perf_counter()
            with socket.create_connection((self.address[name], port), timeout=5):
                taken.append((time.perf_counter() - started) * 1000)
        return taken

    def kill(self, name: str) -> None:
        for process in self.processes[name]:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes[name] = []

    def power_off(self, name: str) -> None:
        """The host is gone: every process killed at once, its link down; what it held stays unfinished."""
        self.kill(name)
        _sh(*self._in(name), "ip", "link", "set", self.tap[name], "down")

    def close(self) -> None:
        for name in self.names:
            self.kill(name)
        if self._switch.poll() is None:
            self._switch.kill()
            self._switch.wait(timeout=10)
        for namespace in self.namespace.values():
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


class Deployment:
    """PicMetric on hosts of its own: PostgreSQL, SeaweedFS S3 and Redis each on a host, the API on one, every
    worker on one, all on one ``Network``. The test process (the client host) reads the store across the switch
    too. ``extra``: settings every host gets (leases, timeouts)."""

    PORTS = {"pg": 5432, "redis": 6379, "api": 8000, "master": 9333, "volume": 8080, "filer": 8888, "s3": 8333}

    def __init__(self, log_dir: Path, workers: int = 2, **extra: object) -> None:
        from picmetric.settings import Settings

        self.workers = [f"worker{i + 1}" for i in range(workers)]
        self.network = Network(["api", "pg", "s3", "redis", *self.workers], log_dir)
        self.log_dir = log_dir
        self._data = Path(tempfile.mkdtemp(prefix="picmetric-hosts-"))  # PostgreSQL's user must reach it
        at = self.network.address
        self.settings = Settings(
            data_dir=log_dir / "client", database_url=f"postgresql+psycopg2://postgres@{at['pg']}:5432/postgres",
            s3_endpoint_url=f"http://{at['s3']}:{self.PORTS['s3']}", s3_bucket="picmetric", s3_access_key="test-access",
            s3_secret_key="test-secret-value", broker_url=f"redis://{at['redis']}:{self.PORTS['redis']}/0", **extra,
        )  # fmt: skip
        try:
            self._start_servers()
        except BaseException:
            self.close()
            raise
        self.api_url = f"http://{at['api']}:{self.PORTS['api']}"

    def _start_servers(self) -> None:
        from .services import redis_command, weed_command

        at, ports = self.network.address, self.PORTS
        postgres = self._data / "pg"
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        shutil.chown(self._data, "postgres", "postgres")
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(binaries / "initdb"), "-D", str(postgres), "-A", "trust",
             "-U", "postgres", "--no-sync", "-E", "UTF8"], check=True, capture_output=True,
        )  # fmt: skip
        with open(postgres / "pg_hba.conf", "a") as hba:
            hba.write("host all all 10.200.0.0/16 trust\n")
        self.network.start(
            "pg", [str(binaries / "postgres"), "-D", str(postgres), "-c", f"listen_addresses={at['pg']}",
                   "-c", f"unix_socket_directories={self._data}", "-c", "fsync=off", "-c", "max_connections=300"],
            user="postgres",
        )  # fmt: skip
        for name in ("s3", "redis"):
            (self._data / name).mkdir()
        self.network.start("s3", weed_command(self._data / "s3", at["s3"], ports))
        self.network.start("redis", redis_command(self._data / "redis", at["redis"], ports["redis"]))
        for name, port in (("pg", ports["pg"]), ("s3", ports["s3"]), ("redis", ports["redis"])):
            self.network.wait_for_port(name, port, timeout_s=90)
        self._wait_for_bucket()

    def _wait_for_bucket(self, timeout_s: float = 90.0) -> None:
        """SeaweedFS listens before its filer is up: make the bucket once it answers."""
        from picmetric.errors import StorageError
        from picmetric.storage.s3 import S3BlobStore

        store = S3BlobStore(self.settings)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                store.ensure_bucket()
                return
            except StorageError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def environment(self, host: str) -> dict[str, str]:
        """What host ``host`` is given: the shared settings, and a data folder of its own."""
        from .stack import deployment_environment

        return {**deployment_environment(self.settings), "PICMETRIC_DATA_DIR": str(self.log_dir / host)}

    def start_api(self) -> None:
        at = self.network.address
        command = [sys.executable, "-m", "picmetric", "serve", "--host", at["api"], "--port", str(self.PORTS["api"]),
                   "--log-level", "warning"]  # fmt: skip
        self.network.start("api", command, self.environment("api"))
        self.network.wait_for_port("api", self.PORTS["api"], timeout_s=180)

    def start_worker(self, host: str, *extra: str, tree: Path | None = None) -> None:
        """``picmetric worker`` on ``host``; from another checkout when ``tree`` (a benchmark's before)."""
        command = [sys.executable, "-m", "picmetric", "worker", "--log-level=info", *extra]
        env = self.environment(host) | ({"PYTHONPATH": str(tree)} if tree else {})
        self.network.start(host, command, env, cwd=tree)

    def close(self) -> None:
        self.network.close()
        shutil.rmtree(self._data, ignore_errors=True)


def main(argv: list[str]) -> None:
    taps = {}
    for item in argv:
        name, tap = item.split("=", 1)
        taps[name] = _open_tap(tap)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _Switch(taps).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
