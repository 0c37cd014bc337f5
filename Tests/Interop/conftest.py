"""Shared fixtures for the interop tests: they drive the built `execstream` binary with real peers."""
import os
import shutil
import subprocess

import pytest


@pytest.fixture(scope="session")
def execstream_bin() -> str:
    """The path of the built `execstream` binary (EXECSTREAM_BIN, set by `make interop-test`)."""
    path = os.environ.get("EXECSTREAM_BIN")
    if not path:
        bin_dir = subprocess.run(["swift", "build", "--show-bin-path"], check=True, capture_output=True, text=True).stdout.strip()
        path = os.path.join(bin_dir, "execstream")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"execstream binary not found at {path}: run `make build` first")
    return path


@pytest.fixture(scope="session")
def pkg_config() -> str:
    tool = shutil.which("pkg-config")
    if tool is None:
        pytest.fail("pkg-config is missing: `make deps` installs it")
    return tool


import contextlib
import dataclasses
import re
import http.server
import queue
import threading
import signal
import socket
import time


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@dataclasses.dataclass
class RunningServer:
    """An `execstream serve` process and the addresses it reported."""

    process: subprocess.Popen
    port: int
    port6: int | None
    unix_socket: str
    output: list
    lines: "queue.Queue"
    # Every TCP listener: (scheme, host, port, planes), as "listening on" said.
    listeners: list = dataclasses.field(default_factory=list)

    @property
    def control_port(self) -> int:
        """The first --control-listen port on 127.0.0.1 (mutual TLS)."""
        return next(port for _, host, port, planes in self.listeners if host == "127.0.0.1" and planes.startswith("control"))

    @property
    def url(self) -> str:
        """The data plane (plain TCP): streaming URLs and health only."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def control(self) -> str:
        """The grpcio target of the control plane: the unix socket."""
        return f"unix:{self.unix_socket}"

    def rss_kib(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def is_running(self) -> bool:
        return self.process.poll() is None


# "listening on http://127.0.0.1:10350 (data plane)", "https://…" with TLS.
LISTENING = re.compile(r"listening on (?P<scheme>https?)://(?P<host>[^ ]+):(?P<port>\d+) \((?P<planes>[^)]*)\)")


def start_server(execstream_bin: str, socket_path: str, *extra: str, timeout: float = 60, env: dict | None = None) -> RunningServer:
    """Starts `execstream serve` on loopback port 0 and waits for every "listening on" line
    (`env`: variables added to the server's environment)."""
    args = [execstream_bin, "serve", "--listen", "127.0.0.1:0", "--cri-socket", socket_path, "--log-level", "warning", *extra]
    want_v6 = ipv6_loopback_available()
    if want_v6:
        args[2:2] = ["--listen", "[::1]:0"]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=None if env is None else {**os.environ, **env}
    )
    lines: queue.Queue = queue.Queue()

    def pump():
        # Drains the server's output for its whole life, so it can never block on a full pipe.
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    output, port, port6, unix_ready, listeners = [], None, None, False, []
    deadline = time.monotonic() + timeout
    controls = extra.count("--control-listen")

    def waiting() -> bool:
        have_controls = sum(1 for _, _, _, planes in listeners if planes.startswith("control"))
        return port is None or (want_v6 and port6 is None) or not unix_ready or have_controls < controls

    while waiting():
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            process.kill()
            raise RuntimeError("server did not start:\n" + "".join(output))
        output.append(line)
        if match := LISTENING.match(line):
            listeners.append((match["scheme"], match["host"], int(match["port"]), match["planes"]))
            if not match["planes"].startswith("data plane"):
                continue
            if match["host"] == "127.0.0.1" and port is None:
                port = int(match["port"])
            elif match["host"] == "[::1]" and port6 is None:
                port6 = int(match["port"])
        elif line.startswith("listening on unix://"):
            unix_ready = True
    return RunningServer(process, port, port6, socket_path, output, lines, listeners)


def stop_server(server: RunningServer, timeout: float = 60) -> int:
    """Stops the server gracefully; a non-zero exit fails with everything the server printed."""
    if server.is_running():
        server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=timeout)
    if code != 0:
        rest = []
        while (line := server.lines.get(timeout=10)) is not None:
            rest.append(line)
        raise AssertionError(f"server exited with {code}:\n" + "".join(server.output + rest))
    return code


@pytest.fixture(scope="module")
def server(execstream_bin, tmp_path_factory):
    """One server per test module (and per xdist worker), stopped gracefully afterwards."""
    socket_path = str(tmp_path_factory.mktemp("execstream") / "execstream.sock")
    running = start_server(execstream_bin, socket_path, "--enable-benchmark-routes")
    yield running
    assert stop_server(running) == 0


def compile_protos(tmp_path_factory, name: str, *protos: str):
    """Python stubs for our .proto files, compiled here by grpcio-tools: an independent code
    generator reading the same contract as our Swift code. Returns the modules, in order."""
    import importlib
    import pathlib
    import sys

    out = tmp_path_factory.mktemp(name)
    root = pathlib.Path(__file__).resolve().parents[2] / "Protos"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"--python_out={out}", f"--grpc_python_out={out}", *protos],
        check=True,
    )
    sys.path.insert(0, str(out))
    modules = []
    for proto in protos:
        base = proto[: -len(".proto")].replace("/", ".")
        modules.append(importlib.import_module(base + "_pb2"))
        modules.append(importlib.import_module(base + "_pb2_grpc"))
    return modules


@pytest.fixture(scope="session")
def cri(tmp_path_factory):
    """runtime.v1: (messages, stubs)."""
    api, stubs = compile_protos(tmp_path_factory, "cri_stubs", "runtime/v1/api.proto")
    return api, stubs


@pytest.fixture(scope="session")
def containerd_protos(tmp_path_factory):
    """containerd's streaming service and transfer messages, and the execstream.v1 container API:
    (streaming messages, streaming stubs, transfer messages, containers messages, containers stubs)."""
    streaming, streaming_stubs, transfer, _, containers, containers_stubs = compile_protos(
        tmp_path_factory,
        "containerd_stubs",
        "containerd/services/streaming/v1/streaming.proto",
        "containerd/types/transfer/streaming.proto",
        "execstream/v1/containers.proto",
    )
    return streaming, streaming_stubs, transfer, containers, containers_stubs


@pytest.fixture
def http_server():
    """A local HTTP server answering 200 with a body that names its path."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"hello from {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture
def api(sidecar, containerd_protos):
    """The container API (and containerd's Stream) on the test module's own `sidecar` server."""
    import grpc
    from container_runtime import Runtime

    with grpc.insecure_channel(f"unix:{sidecar.unix_socket}") as channel:
        yield Runtime(channel, containerd_protos)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """Test certificates (see pki.py), made once per session."""
    from pki import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


@contextlib.contextmanager
def runtime_on(server, cri):
    """CRI RuntimeService on `server`'s control plane (its unix socket): (messages, stub)."""
    import grpc

    api, stubs = cri
    with grpc.insecure_channel(server.control) as channel:
        yield api, stubs.RuntimeServiceStub(channel)


@pytest.fixture
def runtime(server, cri):
    """CRI RuntimeService on the module's `server`: (messages, stub)."""
    with runtime_on(server, cri) as runtime:
        yield runtime
