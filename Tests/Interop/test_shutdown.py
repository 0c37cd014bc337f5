"""Stopping the server as an operator does: the first SIGTERM drains (and says, every few seconds,
what it still waits for); a second one ends at once, killing every exec's process group, even
when the server was told to keep execs whose clients vanish. The test waits for events (a line
of the exec's output, a log line, the process's exit), never for time."""
import signal
import subprocess
import time
import uuid

import grpc
import pytest
import websocket

from conftest import start_server


def wait_for_line(server, fragment: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        line = server.lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, f"the server exited before {fragment!r}"
        if fragment in line:
            return line


@pytest.mark.parametrize("keep", [False, True], ids=["default", "keep-process-on-disconnect"])
def test_a_second_signal_ends_the_drain_at_once_and_kills_the_execs(execstream_bin, tmp_path, cri, keep):
    api, stubs = cri
    extra = ["--log-level", "info"] + (["--keep-process-on-disconnect"] if keep else [])
    server = start_server(execstream_bin, str(tmp_path / "s.sock"), *extra)
    marker = f"1000.{uuid.uuid4().int % 10**9}"  # sleep takes fractional seconds: a unique command line
    with grpc.insecure_channel(server.control) as channel:
        request = api.ExecRequest(container_id="demo", cmd=["sh", "-c", f"echo started; exec sleep {marker}"], stdout=True, stderr=True)
        url = stubs.RuntimeServiceStub(channel).Exec(request, timeout=10).url
    ws = websocket.create_connection(url.replace("http://", "ws://"), subprotocols=["v5.channel.k8s.io"], timeout=30)
    try:
        received = b""
        while b"started" not in received:
            opcode, data = ws.recv_data()
            if data[:1] == b"\x01":
                received += data[1:]
        assert subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode == 0

        server.process.send_signal(signal.SIGTERM)
        wait_for_line(server, "graceful shutdown: draining connections")
        progress = wait_for_line(server, "execstream: draining ")
        assert "sessions=1" in progress and "exec=1" in progress and "execProcesses=1" in progress, progress

        forced = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=2)
        assert time.monotonic() - forced < 2
        wait_for_line(server, "second SIGTERM: ending now")
    finally:
        ws.close()
        if server.process.poll() is None:
            server.process.kill()
    assert subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode == 1, "the exec outlived the server"
