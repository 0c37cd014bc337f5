"""Remote command over SPDY/3.1 (the kubelet's and crictl's default transport): the upgrade,
stream creation in client-go's order, output, status per protocol version, and the ending."""
import json

import grpc
import pytest

from spdy_client import SPDYClient

ALL = ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]




def exec_url(runtime, cmd, *, stdin=False, stderr=True, tty=False) -> str:
    api, service = runtime
    request = api.ExecRequest(container_id="demo", cmd=cmd, stdin=stdin, stdout=True, stderr=stderr and not tty, tty=tty)
    return service.Exec(request, timeout=10).url


def open_streams(client: SPDYClient, *, stdin: bool, stderr: bool = True, resize: bool = False):
    # client-go's order: error, stdin, stdout, stderr, resize — each awaited.
    client.open_stream("error")
    if stdin:
        client.open_stream("stdin")
    client.open_stream("stdout")
    if stderr:
        client.open_stream("stderr")
    if resize:
        client.open_stream("resize")


def test_exec_with_stdin_and_the_ending(runtime):
    client = SPDYClient(exec_url(runtime, ["sh", "-c", "tr a-z A-Z; echo err >&2; exit 3"], stdin=True), ALL)
    assert client.status == 101
    assert client.protocol == "v5.channel.k8s.io"
    open_streams(client, stdin=True)
    client.send("stdin", b"hello spdy\n", fin=True)
    client.run_until_closed()
    client.close()
    assert client.output("stdout") == b"HELLO SPDY\n"
    assert client.output("stderr") == b"err\n"
    status = json.loads(client.output("error"))
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    # stdout, stderr and error all end with FIN, then GOAWAY.
    assert {client.streams[t] for t in ("stdout", "stderr", "error")} <= client.fin
    assert client.goaway


@pytest.mark.parametrize("version", ALL)
def test_every_version_reports_the_status_its_way(runtime, version):
    client = SPDYClient(exec_url(runtime, ["sh", "-c", "echo -n hello; exit 2"]), [version])
    assert client.protocol == version
    open_streams(client, stdin=False)
    client.run_until_closed()
    client.close()
    assert client.output("stdout") == b"hello"
    if version in ("v5.channel.k8s.io", "v4.channel.k8s.io"):
        assert json.loads(client.output("error"))["status"] == "Failure"
    else:
        assert client.output("error") == b"command terminated with non-zero exit code: exit status 2"


def test_success_writes_nothing_on_the_error_stream_before_v4(runtime):
    client = SPDYClient(exec_url(runtime, ["true"]), ["v3.channel.k8s.io"])
    open_streams(client, stdin=False)
    client.run_until_closed()
    client.close()
    assert client.output("error") == b""
    assert client.streams["error"] in client.fin


def test_critest_exec_echo_n_hello(runtime):
    client = SPDYClient(exec_url(runtime, ["echo", "-n", "hello"]), ALL)
    open_streams(client, stdin=False)
    client.run_until_closed()
    client.close()
    assert client.output("stdout") == b"hello"
    assert client.output("stderr") == b""
    assert json.loads(client.output("error")) == {"metadata": {}, "status": "Success"}


def test_tty_with_resize_stream(runtime):
    url = exec_url(runtime, ["sh", "-c", "read x; stty size"], stdin=True, tty=True)
    client = SPDYClient(url, ["v4.channel.k8s.io"])
    open_streams(client, stdin=True, stderr=False, resize=True)
    client.send("resize", b'{"Width":77,"Height":22}\n')
    client.send("stdin", b"go\n")
    client.run_until_closed()
    client.close()
    assert client.output("stdout").endswith(b"22 77\r\n")


def test_nothing_is_sent_before_the_clients_first_frame(runtime):
    client = SPDYClient(exec_url(runtime, ["true"]), ALL)
    # Our first frame is a PING: if the server had sent anything unasked, it would come first.
    client.ping(1)
    client.pump()
    assert client.pongs == [1]
    assert not client.replied
    open_streams(client, stdin=False)
    client.run_until_closed()
    client.close()


def test_upgrade_refusals(runtime, server):
    url = exec_url(runtime, ["echo", "kept"])
    client = SPDYClient(url, [])
    assert client.status == 400
    client.close()
    client = SPDYClient(url, ["v9.channel.k8s.io"])
    assert client.status == 403
    assert "v4.channel.k8s.io" in client.headers["x-accepted-stream-protocol-versions"][0]
    client.close()
    client = SPDYClient(f"http://127.0.0.1:{server.port}/exec/nope", ALL)
    assert (client.status, client.body) == (404, b"404 page not found\n")
    client.close()
    # The refusals left the token unspent.
    client = SPDYClient(url, ALL)
    open_streams(client, stdin=False)
    client.run_until_closed()
    client.close()
    assert client.output("stdout") == b"kept\n"


def test_an_unexpected_stream_is_reset(runtime):
    client = SPDYClient(exec_url(runtime, ["true"]), ALL)
    client.open_stream("error")
    stream_id = client.next_id
    client.control(1, 0, __import__("struct").pack(">IIBB", stream_id, 0, 0, 0) + __import__("spdy_client").header_block({"streamtype": "bogus"}, client.deflate))
    while stream_id not in client.resets:
        client.pump()
    client.close()


def test_attach_over_spdy(runtime):
    api, service = runtime
    url = service.Attach(api.AttachRequest(container_id="demo", stdin=True, stdout=True, stderr=True), timeout=10).url
    client = SPDYClient(url, ALL)
    open_streams(client, stdin=True)
    client.send("stdin", b"echo spdy-attach-$((40+2))\n")
    while b"spdy-attach-42\n" not in client.output("stdout"):
        client.pump()
    client.close()


def test_streams_not_all_created_in_time_end_the_connection(execstream_bin, cri, tmp_path):
    from conftest import start_server, stop_server

    config = tmp_path / "execstream.yaml"
    config.write_text("sessions: {streamCreationTimeoutSeconds: 0.5}\n")
    running = start_server(execstream_bin, str(tmp_path / "s.sock"), "--config", str(config))
    try:
        api, stubs = cri
        with grpc.insecure_channel(running.control) as channel:
            url = stubs.RuntimeServiceStub(channel).Exec(api.ExecRequest(container_id="demo", cmd=["true"], stdout=True), timeout=10).url
        client = SPDYClient(url, ALL)
        client.open_stream("error")  # stdout never comes
        client.run_until_closed()  # the server gives up: GOAWAY, then close
        client.close()
        assert client.goaway
    finally:
        assert stop_server(running) == 0


@pytest.mark.parametrize("seed", range(5))
def test_garbage_after_the_upgrade_closes_only_that_connection(runtime, server, seed):
    import os
    import random

    rng = random.Random(seed)
    client = SPDYClient(exec_url(runtime, ["true"]), ALL)
    assert client.status == 101
    # A control frame of a wrong version, a DATA frame for stream 0, or a SYN_STREAM whose header
    # block is noise (it cannot inflate): each is definitively wrong, so the server ends the
    # connection at once rather than waiting for more bytes.
    noise = bytes(rng.randrange(256) for _ in range(rng.randrange(8, 256)))
    junk = [
        bytes([0x80, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04]) + os.urandom(4),
        b"\x00\x00\x00\x00\x00\x00\x00\x03abc",
        bytes([0x80, 0x03, 0x00, 0x01, 0x00]) + (10 + len(noise)).to_bytes(3, "big") + b"\x00\x00\x00\x01" + b"\x00" * 6 + noise,
    ][seed % 3]
    client._send(junk)
    client.run_until_closed()  # the server ends this connection, nothing else
    client.close()
    assert server.is_running()
    healthy = SPDYClient(exec_url(runtime, ["echo", "-n", "still fine"]), ALL)
    open_streams(healthy, stdin=False)
    healthy.run_until_closed()
    healthy.close()
    assert healthy.output("stdout") == b"still fine"


# Every frame remote command has no use for gets a defined answer at once (issue 13): a stream
# error (RST_STREAM) where the session can go on, a session error (GOAWAY PROTOCOL_ERROR, then
# close) where it cannot. Statuses: 1 PROTOCOL_ERROR, 2 INVALID_STREAM, 9 STREAM_ALREADY_CLOSED.
def _syn_stream(client, stream_id, streamtype):
    import struct

    from spdy_client import header_block

    client.control(1, 0, struct.pack(">IIBB", stream_id, 0, 0, 0) + header_block({"streamtype": streamtype}, client.deflate))


STREAM_ERRORS = {
    "DATA on a stream never opened": (lambda c: c._send(__import__("struct").pack(">II", 99, 3) + b"abc"), 99, 2),
    "SYN_REPLY (the server opens no streams)": (
        lambda c: c.control(2, 0, __import__("struct").pack(">I", c.streams["stdout"]) + __import__("spdy_client").header_block({}, c.deflate)),
        "stdout",
        2,
    ),
    "HEADERS on a stream never opened": (
        lambda c: c.control(8, 0, __import__("struct").pack(">I", 77) + __import__("spdy_client").header_block({"x": "y"}, c.deflate)),
        77,
        2,
    ),
    "SYN_STREAM with an even id": (lambda c: _syn_stream(c, 100, "resize"), 100, 1),
    "SYN_STREAM after the start": (lambda c: _syn_stream(c, 101, "stdin"), 101, 3),
}


@pytest.mark.parametrize("case", sorted(STREAM_ERRORS))
def test_a_stream_error_is_answered_with_rst_stream_and_the_session_goes_on(runtime, case):
    send, stream, status = STREAM_ERRORS[case]
    client = SPDYClient(exec_url(runtime, ["cat"], stdin=True), ALL)
    open_streams(client, stdin=True)
    stream_id = client.streams[stream] if isinstance(stream, str) else stream
    send(client)
    while stream_id not in client.resets:
        client.pump()
    assert client.resets[stream_id] == status
    client.send("stdin", b"still here\n", fin=True)
    client.run_until_closed()
    client.close()
    assert client.output("stdout") == b"still here\n"
    assert json.loads(client.output("error"))["status"] == "Success"


def test_stdin_after_its_fin_is_answered_stream_already_closed(runtime):
    client = SPDYClient(exec_url(runtime, ["sh", "-c", "cat; sleep 30"], stdin=True), ALL)
    open_streams(client, stdin=True)
    client.send("stdin", b"before fin\n", fin=True)
    while client.output("stdout") != b"before fin\n":
        client.pump()
    client.send("stdin", b"after fin\n")
    while client.streams["stdin"] not in client.resets:
        client.pump()
    assert client.resets[client.streams["stdin"]] == 9
    client.close()


SESSION_ERRORS = {
    "an unknown control type": b"\x80\x03\x00\x0c\x00\x00\x00\x04\x00\x00\x00\x00",
    "a PING that claims 4,096 bytes (answered from its header)": b"\x80\x03\x00\x06\x00\x00\x10\x00",
    "a control frame that claims 1 MiB (answered from its header)": b"\x80\x03\x00\x04\x00\x10\x00\x00",
    "a SPDY/2 frame": b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01",
    "a RST_STREAM of 4 bytes": b"\x80\x03\x00\x03\x00\x00\x00\x04\x00\x00\x00\x01",
    "a SYN_STREAM id below the last": None,
}


@pytest.mark.parametrize("case", sorted(SESSION_ERRORS))
def test_a_session_error_is_answered_with_goaway_protocol_error_and_close(runtime, server, case):
    client = SPDYClient(exec_url(runtime, ["cat"], stdin=True), ALL)
    client.open_stream("error")
    client.open_stream("stdin")
    if SESSION_ERRORS[case] is None:
        _syn_stream(client, 1, "stdout")
    else:
        client._send(SESSION_ERRORS[case])
    client.run_until_closed()  # no more bytes from the client: the answer cannot wait for any
    client.close()
    assert client.goaway and client.goaway_status == 1
    assert server.is_running()
