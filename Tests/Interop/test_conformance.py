"""A mirror of critest's streaming conformance tests (PROTOCOLS.md §6), run over each transport a
client may use: SPDY/3.1 (crictl's and the kubelet's default), WebSocket v5 (crictl -r
websocket) and ExecStream's native HTTP/2 format. Port-forward runs in critest's two modes:
SPDY, and SPDY tunnelled over WebSocket (-websocket-portforward)."""
import json
import os
import select
import subprocess

import grpc
import pytest
import websocket

import native_client
from conftest import runtime_on, start_server, stop_server
from spdy_client import SPDYClient

TRANSPORTS = ["spdy", "websocket-v5", "native-h2"]


@pytest.fixture(scope="module")
def conformance_server(execstream_bin, tmp_path_factory):
    # One /bin/sh with stdin and stdin_once per transport: critest's attach container.
    directory = tmp_path_factory.mktemp("conformance")
    config = directory / "execstream.yaml"
    config.write_text(
        "containers:\n"
        + "".join(f"  - {{id: sh-{t}, main: {{command: [/bin/sh], stdin: true, stdinOnce: true}}}}\n" for t in TRANSPORTS)
    )
    running = start_server(execstream_bin, str(directory / "s.sock"), "--config", str(config))
    yield running
    assert stop_server(running) == 0


@pytest.fixture
def runtime(conformance_server, cri):
    with runtime_on(conformance_server, cri) as runtime:
        yield runtime


class Session:
    """One remote command over `transport`: write stdin, read stdout/stderr/status."""

    def __init__(self, transport: str, url: str, *, stdin: bool, tty: bool, stderr: bool):
        self.transport = transport
        if transport == "spdy":
            self.client = SPDYClient(url, ["v5.channel.k8s.io", "v4.channel.k8s.io"])
            self.client.open_stream("error")
            if stdin:
                self.client.open_stream("stdin")
            self.client.open_stream("stdout")
            if stderr and not tty:
                self.client.open_stream("stderr")
            if tty:
                self.client.open_stream("resize")  # client-go always opens it for a tty
        elif transport == "websocket-v5":
            self.client = websocket.create_connection(url.replace("http://", "ws://"), subprotocols=["v5.channel.k8s.io"], timeout=60)
            self.messages = []
        else:
            self.client = native_client.NativeStream(url)

    def write(self, data: bytes):
        if self.transport == "spdy":
            self.client.send("stdin", data)
        elif self.transport == "websocket-v5":
            self.client.send_binary(b"\x00" + data)
        else:
            self.client.send(native_client.frame(native_client.STDIN, data))

    def close_stdin(self):
        if self.transport == "spdy":
            self.client.send("stdin", b"", fin=True)
        elif self.transport == "websocket-v5":
            self.client.send_binary(b"\xff\x00")
        else:
            self.client.send(b"", end=True)

    def wait_for_stdout(self, marker: bytes):
        """Reads until stdout so far contains `marker` (proof the session is attached and live)."""
        if self.transport == "spdy":
            while marker not in self.client.output("stdout"):
                self.client.pump()
        elif self.transport == "websocket-v5":
            while marker not in b"".join(m[1:] for m in self.messages if m[:1] == b"\x01"):
                opcode, data = self.client.recv_data(control_frame=True)
                assert opcode != websocket.ABNF.OPCODE_CLOSE, "closed before the marker"
                self.messages.append(data)
        else:
            self.client.wait_for_stdout(marker)

    def finish(self) -> tuple[bytes, bytes, dict]:
        if self.transport == "spdy":
            self.client.run_until_closed()
            self.client.close()
            return self.client.output("stdout"), self.client.output("stderr"), json.loads(self.client.output("error"))
        if self.transport == "websocket-v5":
            while True:
                opcode, data = self.client.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                self.messages.append(data)
            self.client.close()
            pick = lambda channel: b"".join(m[1:] for m in self.messages if m[:1] == bytes([channel]))
            return pick(1), pick(2), json.loads(pick(3))
        result = self.client.wait()
        self.client.close()
        return result.stdout, result.stderr, result.status_json


def exec_url(runtime, cmd, *, stdin=False, tty=False) -> str:
    api, service = runtime
    return service.Exec(api.ExecRequest(container_id="demo", cmd=cmd, stdin=stdin, stdout=True, stderr=not tty, tty=tty), timeout=10).url


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_tty_false_stdin_false(runtime, transport):
    session = Session(transport, exec_url(runtime, ["echo", "-n", "hello"]), stdin=False, tty=False, stderr=True)
    if transport == "native-h2":
        session.close_stdin()
    stdout, stderr, status = session.finish()
    assert stdout == b"hello"
    assert stderr == b""
    assert status == {"metadata": {}, "status": "Success"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exec_tty_true_stdin_left_open_still_finishes(runtime, transport):
    session = Session(transport, exec_url(runtime, ["echo", "-n", "hello"], stdin=True, tty=True), stdin=True, tty=True, stderr=False)
    # stdin is never closed: the server must finish anyway.
    stdout, stderr, status = session.finish()
    assert b"hello" in stdout
    assert stderr == b""
    assert status["status"] == "Success"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_attach_with_stdin_once(runtime, transport):
    api, service = runtime
    container = f"sh-{transport}"
    url = service.Attach(api.AttachRequest(container_id=container, stdin=True, stdout=True, stderr=True), timeout=10).url
    session = Session(transport, url, stdin=True, tty=False, stderr=True)
    session.write(b"echo -n hello\n")
    session.close_stdin()  # stdin_once: the container's stdin closes, sh exits, attach ends
    stdout, stderr, status = session.finish()
    assert stdout == b"hello"
    assert stderr == b""
    assert status == {"metadata": {}, "status": "Success"}
    state = service.ContainerStatus(api.ContainerStatusRequest(container_id=container), timeout=10).status.state
    assert state == api.CONTAINER_EXITED


@pytest.mark.parametrize("mode", ["spdy", "websocket"])
def test_port_forward_gets_200(runtime, http_server, mode):
    # critest forwards to the pod's port 80 with SPDY by default and through the SPDY tunnel over
    # WebSocket with -websocket-portforward; the pod's port here is the local HTTP server's.
    api, service = runtime
    url = service.PortForward(api.PortForwardRequest(pod_sandbox_id="demo", port=[http_server]), timeout=10).url
    if mode == "spdy":
        client = SPDYClient(url, ["portforward.k8s.io"])
    else:
        client = SPDYClient.over_websocket(url)
    response = client.forward_get(http_server, 0, "/")
    assert response.startswith(b"HTTP/1.0 200 OK")
    assert client.output("error-0") == b""
    client.close()


def test_exec_sync_and_its_timeout_leave_no_process(runtime):
    api, service = runtime
    response = service.ExecSync(api.ExecSyncRequest(container_id="demo", cmd=["echo", "-n", "hello"]), timeout=10)
    assert (response.stdout, response.stderr, response.exit_code) == (b"hello", b"", 0)
    with pytest.raises(grpc.RpcError) as error:
        service.ExecSync(api.ExecSyncRequest(container_id="demo", cmd=["sleep", "4323"], timeout=1), timeout=30)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert subprocess.run(["pgrep", "-f", "sleep 4323"], capture_output=True).stdout == b""
