"""containerd's streaming API (PROTOCOLS.md §8) with grpcio playing containerd: StreamInit and its
Empty ack, credits both ways, preemption by a newer stream, EOF, and errors for bad ids."""
import hashlib
import os
import subprocess

import grpc
import pytest

from conftest import start_server, stop_server
from containerd_client import Stream

GIB = 1 << 30
GIB_COMMAND = "seq 1 200000000 | head -c 1073741824"


@pytest.fixture(scope="module")
def sidecar(execstream_bin, tmp_path_factory):
    directory = tmp_path_factory.mktemp("sidecar")
    config = directory / "execstream.yaml"
    config.write_text(
        "containers:\n"
        f"  - {{id: gib, main: {{command: [sh, -c, '{GIB_COMMAND}'], stdin: false}}}}\n"
        "  - {id: hasher, main: {command: [sha256sum], stdin: true}}\n"
        "  - {id: quiet, main: {command: ['true'], stdin: false}}\n"
        "  - {id: short, main: {command: [sh, -c, 'echo out; echo err >&2'], stdin: false}}\n"
        "  - {id: guarded, main: {command: [echo, kept], stdin: false}}\n"
        "  - {id: metered, main: {command: [printf, metered], stdin: false}}\n"
    )
    running = start_server(execstream_bin, str(directory / "s.sock"), "--config", str(config))
    yield running
    assert stop_server(running) == 0


@pytest.fixture
def channel(sidecar):
    with grpc.insecure_channel(sidecar.control) as channel:
        yield channel


def test_plain_tcp_refuses_the_stream_before_it_attaches(sidecar, containerd_protos):
    """Stream reaches a process's stdio: control plane. On the data-plane port it is refused
    before any handler runs, so the channel keeps its bytes for the runtime on the socket."""
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.port}") as tcp:
        stream = Stream(tcp, containerd_protos, "guarded-stdout", wait_for_ack=False)
        with pytest.raises(grpc.RpcError) as error:
            next(stream.call)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "control-plane call" in error.value.details()
    with grpc.insecure_channel(sidecar.control) as channel:
        assert b"".join(Stream(channel, containerd_protos, "guarded-stdout").read_all()) == b"kept\n"


def test_unknown_id_is_not_found(channel, containerd_protos):
    stream = Stream(channel, containerd_protos, "nobody-stdout", wait_for_ack=False)
    with pytest.raises(grpc.RpcError) as error:
        next(stream.call)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nobody-stdout" in error.value.details()


@pytest.mark.parametrize("bad_id", ["gib", "gib-stdlog", "-stdout", ""])
def test_a_bad_id_is_an_invalid_argument(channel, containerd_protos, bad_id):
    stream = Stream(channel, containerd_protos, bad_id, wait_for_ack=False)
    with pytest.raises(grpc.RpcError) as error:
        next(stream.call)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_first_message_must_be_stream_init(channel, containerd_protos):
    streaming, stubs, transfer = containerd_protos[:3]
    from containerd_client import pack

    call = stubs.StreamingStub(channel).Stream(iter([pack(transfer.WindowUpdate(update=10))]))
    with pytest.raises(grpc.RpcError) as error:
        next(call)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "StreamInit" in error.value.details()


def test_stdout_and_stderr_of_a_short_process(sidecar, containerd_protos):
    # One stream per id, as containerd opens them; both get every byte, then EOF (OK).
    with grpc.insecure_channel(f"unix:{sidecar.unix_socket}") as channel:
        stdout = b"".join(Stream(channel, containerd_protos, "short-stdout").read_all(window=4))
        stderr = b"".join(Stream(channel, containerd_protos, "short-stderr").read_all())
    assert (stdout, stderr) == (b"out\n", b"err\n")


def test_a_finished_id_gets_eof_at_once(channel, containerd_protos):
    # First stream: the channel ended with no output, so EOF at once; later ones find its tombstone.
    for _ in range(2):
        stream = Stream(channel, containerd_protos, "quiet-stdout")
        stream.grant(1 << 20)
        assert stream.read() is None
        assert stream.call.code() == grpc.StatusCode.OK


def test_a_gib_of_stdout_within_credits_is_sha256_exact(sidecar, containerd_protos):
    expected = hashlib.sha256()
    with subprocess.Popen(["sh", "-c", GIB_COMMAND], stdout=subprocess.PIPE) as reference:
        while chunk := reference.stdout.read(1 << 20):
            expected.update(chunk)
    received = hashlib.sha256()
    with grpc.insecure_channel(sidecar.control) as channel:
        stream = Stream(channel, containerd_protos, "gib-stdout")
        for data in stream.read_all(window=1 << 20):  # Stream.read asserts received <= granted
            received.update(data)
        assert stream.call.code() == grpc.StatusCode.OK
    assert stream.received == GIB
    assert received.hexdigest() == expected.hexdigest()


def test_stdin_reaches_the_process_exactly_and_eof_closes_it(sidecar, containerd_protos):
    payload = os.urandom(3 << 20)
    with grpc.insecure_channel(f"unix:{sidecar.unix_socket}") as channel:
        # Open stdout first: sha256sum prints once stdin reaches EOF.
        stdout = Stream(channel, containerd_protos, "hasher-stdout")
        stdin = Stream(channel, containerd_protos, "hasher-stdin")
        assert stdin.take_credit() > 0  # the server grants first
        stdin.write(payload)
        stdin.close_send()
        stdin.finish()
        assert stdin.call.code() == grpc.StatusCode.OK
        out = b"".join(stdout.read_all())
    assert out == f"{hashlib.sha256(payload).hexdigest()}  -\n".encode()


def test_an_unknown_stdin_id_is_not_found(channel, containerd_protos):
    stdin = Stream(channel, containerd_protos, "nobody-stdin", wait_for_ack=False)
    with pytest.raises(grpc.RpcError) as error:
        next(stdin.call)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_each_stream_is_a_session_in_the_metrics(sidecar, containerd_protos):
    from test_metrics import scrape, value

    before = scrape(sidecar)
    with grpc.insecure_channel(sidecar.control) as channel:
        assert b"".join(Stream(channel, containerd_protos, "metered-stdout").read_all()) == b"metered"
        with pytest.raises(grpc.RpcError):
            next(Stream(channel, containerd_protos, "nobody-stdout", wait_for_ack=False).call)
    after = scrape(sidecar)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    stream = {"kind": "containerd_stream", "transport": "grpc"}
    assert grew("execstream_sessions_started_total", **stream) == 2
    assert grew("execstream_sessions_ended_total", outcome="closed", **stream) == 1
    assert grew("execstream_sessions_ended_total", outcome="error", **stream) == 1
    assert value(after, "execstream_sessions_active", **stream) == 0
    assert grew("execstream_session_bytes_total", direction="out", stream="stdout") == len(b"metered")
