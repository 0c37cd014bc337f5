"""Nothing is left behind, on every remote-command transport: after completed sessions and after
clients that vanish mid-stream (the process still writing), no process, no session or protocol
adapter object, no IOChannel and no pipe or pidfd remains, and memory stays flat. The server says
when it has settled (`/debug/settled`): the test waits for that event, not for time."""
import collections
import json
import os
import random
import socket
import struct
import subprocess
import urllib.parse
import uuid

import pytest
import websocket

import native_client
from native_client import NativeStream
from spdy_client import SPDYClient
from websocket_h2 import WebSocketOverH2

TRANSPORTS = ["native", "websocket", "websocket-h2", "spdy"]
# Clients that vanish at random points, per transport (issue 13 asks for 1,000).
DROPS = int(os.environ.get("EXECSTREAM_LEAK_DROPS", "1000"))


def exec_url(runtime, cmd) -> str:
    api, service = runtime
    return service.Exec(api.ExecRequest(container_id="demo", cmd=cmd, stdout=True, stderr=True), timeout=10).url


def settled(server, channels: int | None = None) -> dict:
    """Waits until no session or adapter object is alive and at most `channels` IOChannels are
    (the server answers then), and returns what it reports."""
    query = "" if channels is None else f"?channels={channels}"
    result = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", f"{server.url}/debug/settled{query}"], capture_output=True, text=True, timeout=60
    )
    report = json.loads(result.stdout)
    assert report["settled"], f"still alive after 15 s: {report}"
    return report


def fd_kinds(server) -> collections.Counter:
    """Open fds by kind (pipe, pidfd, …), sockets left out: a connection a client has just
    closed may still be closing. An fd closed while the directory is read is skipped."""
    directory = f"/proc/{server.process.pid}/fd"
    links = []
    for fd in os.listdir(directory):
        try:
            links.append(os.readlink(f"{directory}/{fd}"))
        except FileNotFoundError:
            continue
    return collections.Counter(link.split("[")[0] if "[" in link else link for link in links if not link.startswith("socket:"))


def complete(transport: str, url: str) -> bytes:
    """One session to its end; returns its stdout."""
    if transport == "native":
        return NativeStream(url).wait().stdout
    if transport == "websocket":
        ws = websocket.create_connection(url.replace("http://", "ws://"), subprotocols=["v5.channel.k8s.io"], timeout=30)
        stdout = b""
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if data[:1] == b"\x01":
                stdout += data[1:]
        ws.close()
        return stdout
    if transport == "websocket-h2":
        ws = WebSocketOverH2(url, ["v5.channel.k8s.io"])
        frames = ws.receive_until_close()
        ws.close()
        return b"".join(payload[1:] for _, payload in frames if payload[:1] == b"\x01")
    client = SPDYClient(url, ["v4.channel.k8s.io"])
    for streamtype in ("error", "stdout", "stderr"):
        client.open_stream(streamtype)
    client.run_until_closed()
    client.close()
    return client.output("stdout")


# Where a client may vanish, per transport: before any answer (the request or upgrade sent, the
# token perhaps spent, the process perhaps started), during SPDY's stream set-up, or once the
# session runs.
DROP_POINTS = {
    "native": ["request", "running"],
    "websocket": ["upgrade", "running"],
    "websocket-h2": ["request", "running"],
    "spdy": ["upgrade", "setup", "running"],
}


def abrupt_close(sock, reset: bool) -> None:
    """Closes with FIN, or with RST (SO_LINGER 0) as a crashed peer or a middlebox does."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def raw_upgrade(url: str, headers: list) -> socket.socket:
    """Sends an HTTP/1.1 upgrade request and returns without reading the answer."""
    parsed = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=30)
    lines = [f"GET {parsed.path} HTTP/1.1", f"Host: {parsed.netloc}", "Connection: Upgrade", *headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def vanish(transport: str, url: str, point: str, reset: bool) -> None:
    """Starts a session and drops the connection at `point`, reading nothing more."""
    if transport == "native":
        stream = NativeStream(url)
        while point == "running" and stream.result is None:
            stream.pump_once()
        abrupt_close(stream.sock, reset)
    elif transport == "websocket":
        if point == "upgrade":
            sock = raw_upgrade(url, ["Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                     "Sec-WebSocket-Protocol: v5.channel.k8s.io"])
            abrupt_close(sock, reset)
        else:
            ws = websocket.create_connection(url.replace("http://", "ws://"), subprotocols=["v5.channel.k8s.io"], timeout=30)
            abrupt_close(ws.sock, reset)
    elif transport == "websocket-h2":
        if point == "request":
            abrupt_close(WebSocketOverH2(url, ["v5.channel.k8s.io"], wait=False).sock, reset)
        else:
            ws = WebSocketOverH2(url, ["v5.channel.k8s.io"])
            assert ws.status == 200
            abrupt_close(ws.sock, reset)
    elif point == "upgrade":
        abrupt_close(raw_upgrade(url, ["Upgrade: SPDY/3.1", "X-Stream-Protocol-Version: v4.channel.k8s.io"]), reset)
    else:
        client = SPDYClient(url, ["v4.channel.k8s.io"])
        for streamtype in ("error",) if point == "setup" else ("error", "stdout", "stderr"):
            client.open_stream(streamtype)
        abrupt_close(client.sock, reset)


def processes_with(marker: str) -> list:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sessions_leave_nothing_behind(server, runtime, transport):
    for _ in range(20):  # warm-up: pools and caches the server keeps for its life
        assert complete(transport, exec_url(runtime, ["echo", "ok"])) == b"ok\n"
    baseline = settled(server)
    baseline_fds = fd_kinds(server)
    rss = server.rss_kib()

    for _ in range(1000):
        assert complete(transport, exec_url(runtime, ["echo", "ok"])) == b"ok\n"
    after_completed = settled(server, baseline["channels"])
    growth = server.rss_kib() - rss

    marker = f"leak-probe-{uuid.uuid4().hex}"
    rng = random.Random(f"{transport}-{DROPS}")
    for _ in range(DROPS):
        vanish(transport, exec_url(runtime, ["yes", marker]), rng.choice(DROP_POINTS[transport]), reset=rng.random() < 0.5)
    after_vanished = settled(server, baseline["channels"])

    assert processes_with(marker) == [], "a vanished client's process keeps running"
    assert after_completed["channels"] == after_vanished["channels"] == baseline["channels"]
    assert not fd_kinds(server) - baseline_fds, "more pipes, pidfds or files than before"
    # 1,000 sessions: a reference cycle that kept each SPDY connection (about 105 KiB) would be
    # 100 MiB here; what remains is the allocator's own slack.
    assert growth < 2048, f"RSS grew by {growth} KiB over 1,000 {transport} sessions"
    print(f"{transport}: RSS growth over 1,000 completed sessions: {growth} KiB")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_commands_that_cannot_start_leave_nothing_behind(server, runtime, transport):
    complete(transport, exec_url(runtime, ["echo", "ok"]))
    baseline = settled(server)
    baseline_fds = fd_kinds(server)
    for command in (["/no/such/command"], ["/etc/passwd"], ["no-such-command"]) * 10:
        assert complete(transport, exec_url(runtime, command)) == b""
    assert settled(server, baseline["channels"])["channels"] == baseline["channels"]
    assert not fd_kinds(server) - baseline_fds, "more pipes, pidfds or files than before"


@pytest.mark.parametrize("mode", ["spdy", "spdy-over-websocket"])
def test_port_forward_sessions_leave_nothing_behind(server, runtime, http_server, mode):
    api, service = runtime

    def forward():
        url = service.PortForward(api.PortForwardRequest(pod_sandbox_id="demo", port=[http_server]), timeout=10).url
        client = SPDYClient(url, ["portforward.k8s.io"]) if mode == "spdy" else SPDYClient.over_websocket(url)
        assert client.forward_get(http_server, 0, "/").startswith(b"HTTP/1.0 200 OK")
        client.close()

    forward()
    baseline = settled(server)
    baseline_fds = fd_kinds(server)
    for _ in range(300):
        forward()
    assert settled(server, baseline["channels"])["channels"] == baseline["channels"]
    assert not fd_kinds(server) - baseline_fds, "more pipes, pidfds or files than before"


def test_stdin_credit_sessions_leave_nothing_behind(server, runtime):
    """Native execs with stdin credit (what a console started by exec uses): half run to their
    end, half vanish at random points (before the window, with stdin in flight, with the channel
    full), by FIN or RST."""
    api, service = runtime
    credit = [("execstream-stdin-credit", "1")]
    marker = f"credit-probe-{uuid.uuid4().hex}"

    def url(cmd):
        return service.Exec(api.ExecRequest(container_id="demo", cmd=cmd, stdin=True, stdout=True, stderr=True), timeout=10).url

    def complete():
        stream = NativeStream(url(["cat"]), headers=credit)
        stream.send(native_client.frame(native_client.STDIN, b"ok\n"), end=True)
        assert stream.wait().stdout == b"ok\n"
        stream.close()

    complete()
    baseline = settled(server)
    baseline_fds = fd_kinds(server)
    rng = random.Random(20261125)
    for index in range(400):
        if index % 2 == 0:
            complete()
            continue
        # A process that never reads its stdin: what is sent fills the channel.
        stream = NativeStream(url(["sh", "-c", f"sleep 600; : {marker}"]), headers=credit)
        point = rng.choice(["request", "window", "stdin"])
        if point != "request":
            while stream.result is None or not stream.result.stdin_windows:
                stream.pump_once()
        if point == "stdin":
            taken, limit = stream.result.stdin_windows[0]
            stream.send(native_client.frame(native_client.STDIN, b"x" * rng.randint(1, limit - taken)))
        abrupt_close(stream.sock, reset=rng.random() < 0.5)
    assert settled(server, baseline["channels"])["channels"] == baseline["channels"]
    assert processes_with(marker) == [], "a vanished client's process keeps running"
    assert not fd_kinds(server) - baseline_fds, "more pipes, pidfds or files than before"
