"""Flower's runtime as digitlab drives it: a SuperLink (simulation or deployment) started as a child process on
free ports of 127.0.0.1 and always stopped, with its whole process group, when the block ends; SuperNodes;
and `flwr run` of digitlab's Flower App against it, with a Flower home folder of its own (no ~/.flwr)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from digitlab.errors import DigitlabError

START_TIMEOUT = 60.0  # seconds a SuperLink may take to answer /health (Ray and gRPC imports on a busy machine)
ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    # `flwr run` would otherwise install the app's dependencies into a fresh environment (CUDA torch and all)
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


class FlowerError(DigitlabError):
    pass


def app_dir() -> Path:
    """digitlab's Flower App: a pyproject.toml naming digitlab.federated.server_app:app and client_app:app."""
    return Path(str(resources.files("digitlab.federated") / "app"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flower_env(home: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # flower-superlink, flwr, flwr-simulation beside this Python
    return {**os.environ, **ENV, "FLWR_HOME": str(home), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        raise FlowerError(f"{name} not found: install Flower with digitlab (pip install -e '.[federated]')")
    return path


@dataclass
class Process:
    """A child process in a session of its own, so that stopping it stops what it started (ServerApp,
    simulation runtime, Ray)."""

    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the process and everything it started (Flower's SuperExec and simulation runtime start
        sessions of their own, and Ray its daemons, so a process group is not enough), SIGKILL to what is
        left after `grace` seconds."""
        tree = [self.popen.pid, *descendants(self.popen.pid)]
        _signal(tree, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_running(p) for p in tree):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(0.2)
        tree += [p for p in descendants(self.popen.pid) if p not in tree]
        _signal([p for p in tree if _running(p)], signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the name in () may hold spaces
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def processes_of(home: Path) -> list[int]:
    """Running processes whose environment names this Flower home: everything started for one SuperLink,
    also what was re-parented away from it when its parent exited (Ray's daemons)."""
    marker = f"FLWR_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0") and _running(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def stop_all(home: Path, grace: float = 10.0) -> None:
    """SIGTERM to every process of this Flower home, SIGKILL to what is left after `grace` seconds; returns
    when none is left (or 5 s after the SIGKILL)."""
    left = processes_of(home)
    _signal(left, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_of(home)
    _signal(left, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = processes_of(home)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def spawn(name: str, command: Sequence[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> Process:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        popen = subprocess.Popen(list(command), stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    return Process(name, popen, log)


@dataclass(frozen=True)
class Tls:
    """Certificates for TLS: the CA that signed them, and the SuperLink's certificate and key."""

    ca: Path
    cert: Path
    key: Path


@dataclass
class SuperLink:
    process: Process
    port: int  # the HTTP API (Fleet, Control, ServerAppIo): SuperNodes and `flwr run` connect here
    home: Path  # FLWR_HOME: the Flower config naming this SuperLink as connection "digitlab"
    tls: Tls | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _write_connection(home: Path, address: str, tls: Tls | None) -> None:
    import tomli_w

    conn: dict = {"address": address}
    if tls:
        conn["root-certificates"] = str(tls.ca)
    else:
        conn["insecure"] = True
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(tomli_w.dumps({"superlink": {"default": "digitlab", "digitlab": conn}}))


def _wait_healthy(link: SuperLink, timeout: float) -> None:
    import httpx

    scheme = "https" if link.tls else "http"
    verify = ssl.create_default_context(cafile=str(link.tls.ca)) if link.tls else False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not link.process.alive():
            raise FlowerError(f"flower-superlink exited with code {link.process.popen.returncode}:\n"
                              f"{link.process.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{scheme}://{link.address}/health", timeout=1.0, verify=verify).is_success:
                return
        time.sleep(0.2)
    raise FlowerError(f"flower-superlink did not answer within {timeout:.0f}s:\n{link.process.tail()}")


@contextlib.contextmanager
def superlink(workdir: Path, *, simulation: bool, tls: Tls | None = None, supernode_auth: bool = False,
              timeout: float = START_TIMEOUT) -> Iterator[SuperLink]:
    """A SuperLink on a free port, its logs in workdir/superlink.log, stopped (with everything it started)
    when the block ends, however it ends. simulation=True runs ClientApps on the simulation runtime (no
    SuperNodes); else SuperNodes connect to it. supernode_auth: only registered SuperNodes may connect."""
    home = workdir / "flwr-home"
    port = free_port()
    command = [_tool("flower-superlink"), "--host", "127.0.0.1", "--port", str(port),
               "--control-api-address", f"127.0.0.1:{free_port()}", "--isolation", "subprocess",
               "--disable-runtime-dependency-installation"]
    if simulation:
        command.append("--simulation")
    if tls:
        command += ["--ssl-ca-certfile", str(tls.ca), "--ssl-certfile", str(tls.cert), "--ssl-keyfile", str(tls.key)]
    else:
        command.append("--insecure")
    if supernode_auth:
        command.append("--enable-supernode-auth")  # then only SuperNodes registered by register_supernode
    _write_connection(home, f"127.0.0.1:{port}", tls)
    with sigterm_as_interrupt():
        link = SuperLink(spawn("superlink", command, workdir / "superlink.log", flower_env(home), cwd=workdir),
                         port, home, tls)
        try:
            _wait_healthy(link, timeout)
            yield link
        finally:
            link.process.stop()
            stop_all(home)  # what left the process tree on its own (Ray's daemons) but not yet the machine


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (a `timeout`, a CI runner, `kill`) raises KeyboardInterrupt in the main
    thread, so that the blocks above stop the processes they started instead of leaving them running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def supernode(link: SuperLink, workdir: Path, name: str, node_config: dict[str, str | int],
              auth_key: Path | None = None) -> Process:
    """A SuperNode connected to `link`, with `node_config` (partition-id, num-partitions or data-dir) for the
    ClientApp; its log in workdir/NAME.log. The caller stops it."""
    config = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in node_config.items())
    command = [_tool("flower-supernode"), "--superlink", link.address, "--node-config", config,
               "--host", "127.0.0.1", "--port", str(free_port())]
    command += ["--root-certificates", str(link.tls.ca)] if link.tls else ["--insecure"]
    if auth_key:
        command += ["--auth-supernode-private-key", str(auth_key)]
    return spawn(name, command, workdir / f"{name}.log", flower_env(link.home), cwd=workdir)


def flwr_run(link: SuperLink, run_config: Path, workdir: Path,
             federation_config: dict[str, int | str] | None = None, app: Path | None = None) -> subprocess.Popen:
    """Start `flwr run` of digitlab's app (or the Flower App folder `app`) on `link` with the run config file,
    streaming its logs into workdir/run.log until the run ends (wait() on the returned process).
    federation_config: the simulation's settings (num_supernodes, client_resources_num_cpus, ...)."""
    command = [_tool("flwr"), "run", str(app or app_dir()), "digitlab", "--run-config", str(run_config), "--stream"]
    for key, value in (federation_config or {}).items():
        shown = f'"{value}"' if isinstance(value, str) else value
        command += ["--federation-config", f"{key}={shown}"]
    with open(workdir / "run.log", "ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=flower_env(link.home),
                                cwd=workdir, stdin=subprocess.DEVNULL, start_new_session=True)


def register_supernode(link: SuperLink, public_key: Path, workdir: Path) -> None:
    """Allow the SuperNode holding the private half of `public_key` (OpenSSH, NIST EC) into `link`, which
    runs with SuperNode authentication on (`flwr supernode register`)."""
    with open(workdir / "register.log", "ab") as log:
        result = subprocess.run([_tool("flwr"), "supernode", "register", str(public_key), "digitlab"], stdout=log,
                                stderr=subprocess.STDOUT, env=flower_env(link.home), cwd=workdir,
                                stdin=subprocess.DEVNULL)
    if result.returncode:
        raise FlowerError(f"flwr supernode register {public_key} failed (exit {result.returncode}); see "
                          f"{workdir / 'register.log'}")
