"""Resumable attach (PROTOCOLS.md §9, "Resumable attach"): `execstream attach` through a proxy
that cuts its connections again and again must print exactly what the main process wrote, and
the main process must read exactly what was typed; the wire format is checked with Python h2 as
an independent peer."""
import hashlib
import random
import struct
import subprocess

import grpc
import pytest

from conftest import start_server, stop_server
from container_runtime import expected_output
from cutting_proxy import CuttingProxy
from native_client import ACKNOWLEDGE, POSITION, STDIN_WINDOW, STDOUT, NativeStream, frame

RESUMABLE = [("execstream-resumable", "1")]


@pytest.fixture(scope="module")
def sidecar(execstream_bin, tmp_path_factory):
    directory = tmp_path_factory.mktemp("resumable")
    running = start_server(execstream_bin, str(directory / "s.sock"))
    yield running
    assert stop_server(running) == 0


@pytest.fixture
def cri_service(sidecar, cri):
    messages, stubs = cri
    with grpc.insecure_channel(f"unix:{sidecar.unix_socket}") as channel:
        yield messages, stubs.RuntimeServiceStub(channel)


def attach_through(proxy: CuttingProxy, execstream_bin: str, container: str, *flags: str, stdin=None, timeout: float = 300):
    """Runs `execstream attach` against the server through `proxy`, then closes the proxy."""
    try:
        return subprocess.run(
            [execstream_bin, "attach", *flags, "--server", proxy.address, container],
            stdin=stdin,
            capture_output=True,
            timeout=timeout,
        )
    finally:
        proxy.close()


def attach_url(cri_service, container: str, *, stdin=False) -> str:
    messages, service = cri_service
    return service.Attach(messages.AttachRequest(container_id=container, stdin=stdin, stdout=True, stderr=True), timeout=10).url


def test_attach_output_survives_twenty_cuts(execstream_bin, sidecar, api):
    command = "seq 1 1500000"
    api.create("resume-out", ["sh", "-c", command])
    api.start("resume-out")
    proxy = CuttingProxy(sidecar.unix_socket, cuts=20, seed=20261123, min_bytes=16 << 10, max_bytes=512 << 10)
    attach = attach_through(proxy, execstream_bin, "resume-out", timeout=300)
    assert attach.returncode == 0, attach.stderr.decode(errors="replace")
    expected = expected_output(command)
    assert len(attach.stdout) == len(expected)
    assert hashlib.sha256(attach.stdout).hexdigest() == hashlib.sha256(expected).hexdigest(), "a gap or a duplicate"
    assert proxy.cuts == 20
    assert attach.stderr.count(b"connection lost") == proxy.cuts
    api.remove("resume-out")


def test_stdin_and_output_survive_cuts_in_both_directions(execstream_bin, sidecar, api, tmp_path):
    api.create("resume-cat", ["cat"], stdin=True, stdin_once=True)
    api.start("resume-cat")
    data = random.Random(7).randbytes(4 << 20)
    source = tmp_path / "input"
    source.write_bytes(data)
    proxy = CuttingProxy(sidecar.unix_socket, cuts=12, seed=11, min_bytes=64 << 10, max_bytes=512 << 10)
    with open(source, "rb") as stdin:
        attach = attach_through(proxy, execstream_bin, "resume-cat", "-i", stdin=stdin, timeout=300)
    assert attach.returncode == 0, attach.stderr.decode(errors="replace")
    assert len(attach.stdout) == len(data)
    assert attach.stdout == data, "stdin or stdout has a gap or a duplicate"
    assert proxy.cuts == 12
    api.remove("resume-cat")


def test_without_reconnect_a_cut_is_an_error(execstream_bin, sidecar, api):
    api.create("resume-once", ["sh", "-c", "seq 1 1000000"])
    api.start("resume-once")
    proxy = CuttingProxy(sidecar.unix_socket, cuts=1, seed=3, min_bytes=64 << 10, max_bytes=64 << 10)
    attach = attach_through(proxy, execstream_bin, "resume-once", "--reconnect-timeout", "0", timeout=120)
    assert attach.returncode == 1
    assert b"execstream:" in attach.stderr
    api.remove("resume-once")


def test_unconfirmed_output_comes_again_at_its_offset(sidecar, api, cri_service):
    """Python h2 as the client: a delivery left unacknowledged is sent again, at the same offset,
    to the next resumable attach; once acknowledged the stream moves on."""
    api.create("resume-wire", ["sh", "-c", "seq 1 1000000"])
    api.start("resume-wire")
    first = NativeStream(attach_url(cri_service, "resume-wire"), headers=RESUMABLE)
    while first.result is None or not first.result.deliveries:
        first.pump_once()
    assert first.result.status == 200 and first.result.headers.get("execstream-resumable") == "1"
    offset, payload = first.result.deliveries[0]
    assert offset == 0 and payload.startswith(b"1\n2\n3\n")
    first.close()  # never acknowledged

    second = NativeStream(attach_url(cri_service, "resume-wire"), headers=RESUMABLE)
    while second.result is None or not second.result.deliveries:
        second.pump_once()
    again_offset, again = second.result.deliveries[0]
    assert again_offset == 0 and again[: len(payload)] == payload, "the unconfirmed delivery comes again"
    second.send(frame(ACKNOWLEDGE, struct.pack(">BQ", STDOUT, len(again))))
    while len(second.result.deliveries) < 2:
        second.pump_once()
    assert second.result.deliveries[1][0] == len(again), "after the acknowledgement the stream moves on"
    second.close()
    api.remove("resume-wire")


def test_protocol_mistakes_are_refused(sidecar, api, cri_service):
    api.create("resume-bad", ["sh", "-c", "seq 1 1000000"], stdin=True)
    api.start("resume-bad")
    # Acknowledging bytes never sent resets the stream.
    stream = NativeStream(attach_url(cri_service, "resume-bad", stdin=True), headers=RESUMABLE)
    while stream.result is None or not stream.result.deliveries:
        stream.pump_once()
    assert stream.result.stdin_windows, f"a resumable attach with stdin starts with a stdin window: {stream.result.order[:6]}"
    taken, limit = stream.result.stdin_windows[0]
    assert limit > taken
    offset, payload = stream.result.deliveries[0]
    stream.send(frame(ACKNOWLEDGE, struct.pack(">BQ", STDOUT, offset + len(payload) + 1)))
    assert stream.wait().reset_code == 1  # PROTOCOL_ERROR
    stream.close()

    # Stdin beyond the window resets the stream with FLOW_CONTROL_ERROR.
    stream = NativeStream(attach_url(cri_service, "resume-bad", stdin=True), headers=RESUMABLE)
    while stream.result is None or not stream.result.stdin_windows:
        stream.pump_once()
    taken, limit = stream.result.stdin_windows[0]
    stream.send(frame(0, b"x" * (limit - taken + 1)))
    assert stream.wait().reset_code == 3
    stream.close()
    api.remove("resume-bad")

    # Only an attach resumes: an exec's process ends with its stream.
    messages, service = cri_service
    api.create("resume-exec", ["sleep", "infinity"])
    api.start("resume-exec")
    url = service.Exec(messages.ExecRequest(container_id="resume-exec", cmd=["true"], stdout=True), timeout=10).url
    result = NativeStream(url, headers=RESUMABLE).wait()
    assert result.status == 400 and b"only an attach" in result.body
    result = NativeStream(attach_url(cri_service, "resume-exec"), headers=[("execstream-resumable", "yes")]).wait()
    assert result.status == 400
    api.remove("resume-exec")


def test_output_left_by_an_exited_main_process_is_still_attached_to(execstream_bin, sidecar, api, cri_service):
    command = "seq 1 100000; exit 7"
    api.create("resume-exited", ["sh", "-c", command])
    api.start("resume-exited")
    assert api.wait("resume-exited").exit_code == 7  # its output waits in the channels
    proxy = CuttingProxy(sidecar.unix_socket, cuts=3, seed=5, min_bytes=16 << 10, max_bytes=128 << 10)
    attach = attach_through(proxy, execstream_bin, "resume-exited", timeout=120)
    assert attach.returncode == 0, attach.stderr.decode(errors="replace")  # an attach reports Success
    assert attach.stdout == subprocess.run(["seq", "1", "100000"], capture_output=True, check=True).stdout
    assert proxy.cuts == 3
    # Drained now: Attach is refused as for any container that is not running.
    with pytest.raises(grpc.RpcError) as refused:
        attach_url(cri_service, "resume-exited")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    api.remove("resume-exited")


def test_a_status_lost_with_the_connection_comes_from_the_container_status(execstream_bin, sidecar, api):
    """The connection breaks after the last output byte and before the status: there is nothing
    left to attach to (FAILED_PRECONDITION), and ContainerStatus confirms the main process exited,
    so the attach ends as its status would have (Success) instead of failing."""
    api.create("resume-status", ["sh", "-c", "echo done; exit 5"])
    api.start("resume-status")
    assert api.wait("resume-status").exit_code == 5
    proxy = CuttingProxy(sidecar.unix_socket, cuts=1, cut_before=b'{"metadata":{},"status":"')
    attach = attach_through(proxy, execstream_bin, "resume-status", timeout=120)
    assert (attach.returncode, attach.stdout) == (0, b"done\n"), attach.stderr.decode(errors="replace")
    assert proxy.cuts == 1 and attach.stderr.count(b"connection lost") == 1
    api.remove("resume-status")


def test_stdin_is_announced_before_any_output_even_when_output_is_waiting(sidecar, api, cri_service):
    """The first frame of a resumable attach with stdin is about stdin (a window, or a close for a
    stdin that is gone), also when output is already queued: the client learns where to send from
    before it has anything to acknowledge."""
    api.create("resume-first", ["sh", "-c", "seq 1 100000"], stdin=True)
    api.start("resume-first")
    assert api.wait("resume-first").exit_code == 0  # its output waits in the channel
    stream = NativeStream(attach_url(cri_service, "resume-first", stdin=True), headers=RESUMABLE)
    while stream.result is None or POSITION not in stream.result.order:
        stream.pump_once()
    first = stream.result.order[0]
    assert first in (STDIN_WINDOW, ("close", 0)), stream.result.order[:4]
    stream.close()
    api.remove("resume-first")
