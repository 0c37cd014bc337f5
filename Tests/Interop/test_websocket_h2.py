"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT) on /exec and /attach, with Python h2 as the
HTTP/2 peer and hand-made RFC 6455 frames."""
import base64
import json

import pytest

from websocket_h2 import OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, WebSocketOverH2




def exec_url(runtime, cmd, *, stdin=False, tty=False) -> str:
    api, service = runtime
    return service.Exec(api.ExecRequest(container_id="demo", cmd=cmd, stdin=stdin, stdout=True, stderr=not tty, tty=tty), timeout=10).url


def channel_payloads(frames, channel: int) -> bytes:
    return b"".join(payload[1:] for op, payload in frames if op == OP_BINARY and payload[:1] == bytes([channel]))


def test_v5_exec_with_stdin_close_and_status(runtime):
    ws = WebSocketOverH2(exec_url(runtime, ["sh", "-c", "cat; echo err >&2; exit 4"], stdin=True), ["v5.channel.k8s.io"])
    assert (ws.status, ws.subprotocol) == (200, "v5.channel.k8s.io")
    ws.send(OP_BINARY, b"\x00hello over h2\n")
    ws.send(OP_BINARY, b"\xff\x00")
    frames = ws.receive_until_close()
    ws.wait_until_ended()
    ws.close()
    # The server's END_STREAM may be followed by RST_STREAM NO_ERROR ("stop sending", RFC 9113
    # §8.1) when the client has not ended its side yet; never by an error.
    assert ws.reset_code in (None, 0)
    assert frames[0] == (OP_BINARY, b"\x01")
    assert channel_payloads(frames, 1) == b"hello over h2\n"
    assert channel_payloads(frames, 2) == b"err\n"
    assert json.loads(channel_payloads(frames, 3))["details"]["causes"] == [{"reason": "ExitCode", "message": "4"}]
    assert frames[-1] == (OP_CLOSE, b"\x03\xe8")


def test_base64_framing_and_fragmented_client_messages(runtime):
    ws = WebSocketOverH2(exec_url(runtime, ["head", "-c", "10"], stdin=True), ["v4.base64.channel.k8s.io"])
    message = b"0" + base64.b64encode(b"0123456789")
    ws.send(OP_TEXT, message[:5], fin=False)
    ws.send(OP_CONTINUATION, message[5:])
    frames = ws.receive_until_close()
    ws.close()
    texts = [payload for op, payload in frames if op == OP_TEXT]
    assert texts[0] == b"1"
    assert b"".join(base64.b64decode(t[1:]) for t in texts if t[:1] == b"1") == b"0123456789"
    assert json.loads(base64.b64decode(texts[-1][1:])) == {"metadata": {}, "status": "Success"}


def test_pings_are_answered(runtime):
    ws = WebSocketOverH2(exec_url(runtime, ["sh", "-c", "read x"], stdin=True), ["v5.channel.k8s.io"])
    ws.send(OP_PING, b"h2-ping")
    ws.wait_for(lambda frames: (OP_PONG, b"h2-ping") in frames)
    ws.send(OP_BINARY, b"\x00\n")
    ws.receive_until_close()
    ws.close()


def test_refusals_before_the_stream_opens(runtime, server):
    ws = WebSocketOverH2(f"http://127.0.0.1:{server.port}/exec/unknown", ["v5.channel.k8s.io"])
    assert ws.status == 404
    ws.close()
    url = exec_url(runtime, ["echo", "kept"])
    ws = WebSocketOverH2(url, ["v9.channel.k8s.io"])
    assert ws.status == 403
    ws.close()
    ws = WebSocketOverH2(url, ["v5.channel.k8s.io"])
    assert channel_payloads(ws.receive_until_close(), 1) == b"kept\n"
    ws.close()


def test_a_malformed_frame_closes_with_1002(runtime):
    ws = WebSocketOverH2(exec_url(runtime, ["cat"], stdin=True), ["v5.channel.k8s.io"])
    ws.send(OP_BINARY, b"\xff\x00\x00")
    frames = ws.receive_until_close()
    ws.close()
    assert frames[-1][0] == OP_CLOSE and frames[-1][1][:2] == b"\x03\xea"


def test_attach_over_h2_websocket(runtime):
    api, service = runtime
    url = service.Attach(api.AttachRequest(container_id="demo", stdin=True, stdout=True, stderr=True), timeout=10).url
    ws = WebSocketOverH2(url, ["v5.channel.k8s.io"])
    ws.send(OP_BINARY, b"\x00echo h2-attach-$((7*6))\n")
    ws.wait_for(lambda frames: b"h2-attach-42\n" in channel_payloads(frames, 1))
    ws.close()


def test_an_unmasked_or_oversized_frame_closes_only_that_stream(runtime):
    import struct

    ws = WebSocketOverH2(exec_url(runtime, ["cat"], stdin=True), ["v5.channel.k8s.io"])
    # An unmasked client frame: forbidden by RFC 6455.
    data = bytes([0x82, 0x02]) + b"\x00x"
    ws.conn.send_data(ws.stream_id, data)
    ws.sock.sendall(ws.conn.data_to_send())
    frames = ws.receive_until_close()
    ws.close()
    assert frames[-1][0] == OP_CLOSE and frames[-1][1][:2] == b"\x03\xea"
    # The server and other streams are unharmed.
    ok = WebSocketOverH2(exec_url(runtime, ["echo", "fine"]), ["v5.channel.k8s.io"])
    assert channel_payloads(ok.receive_until_close(), 1) == b"fine\n"
    ok.close()
