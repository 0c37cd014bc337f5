"""A malformed resize message is dropped and the exec goes on, on every transport: later valid
sizes still reach the terminal (the kubelet's library only stops reading resizes; nobody ends an
exec over one). One session decides this for all transports."""
import json

import pytest
import websocket

from native_client import NativeStream, frame
from spdy_client import SPDYClient
from websocket_h2 import OP_BINARY, OP_CLOSE, WebSocketOverH2

SCRIPT = "read a; stty size; read b; stty size"
MALFORMED = [b"not json", b"[]", b'{"Width":-1}', b'{"Width":80,"Height":99999}']




def tty_url(runtime) -> str:
    api, service = runtime
    request = api.ExecRequest(container_id="demo", cmd=["sh", "-c", SCRIPT], stdin=True, stdout=True, tty=True)
    return service.Exec(request, timeout=10).url


def size(width: int, height: int) -> bytes:
    return json.dumps({"Width": width, "Height": height}).encode()


def steps():
    """(resize messages, stdin line, what stty then prints): garbage before each valid size. Each
    step waits for the size it set before the next one changes it."""
    return [
        (MALFORMED[:2] + [size(101, 33)], b"one\n", b"33 101"),
        (MALFORMED[2:] + [size(90, 20)], b"two\n", b"20 90"),
    ]


def expect_sizes(stdout: bytes):
    """What stty printed, in order (the terminal also echoes the typed lines)."""
    sizes = [line for line in stdout.replace(b"\r", b"").split(b"\n") if line.replace(b" ", b"").isdigit()]
    assert sizes == [b"33 101", b"20 90"], stdout


def test_native(runtime):
    stream = NativeStream(tty_url(runtime))
    for resizes, line, printed in steps():
        for message in resizes:
            stream.send(frame(4, message))
        stream.send(frame(0, line))
        stream.wait_for_stdout(printed)
    result = stream.wait()
    assert result.exit_code == 0
    expect_sizes(result.stdout)


def test_websocket(runtime):
    ws = websocket.create_connection(tty_url(runtime).replace("http://", "ws://"), subprotocols=["v5.channel.k8s.io"], timeout=30)
    stdout, status, closed = b"", None, False

    def receive():
        nonlocal stdout, status, closed
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            closed = True
        elif data[:1] == b"\x01":
            stdout += data[1:]
        elif data[:1] == b"\x03":
            status = json.loads(data[1:])

    for resizes, line, printed in steps():
        for message in resizes:
            ws.send_binary(b"\x04" + message)
        ws.send_binary(b"\x00" + line)
        while printed not in stdout:
            receive()
    while not closed:
        receive()
    ws.close()
    assert status["status"] == "Success"
    expect_sizes(stdout)


def test_websocket_over_http2(runtime):
    ws = WebSocketOverH2(tty_url(runtime), ["v5.channel.k8s.io"])

    def stdout(frames) -> bytes:
        return b"".join(payload[1:] for op, payload in frames if op == OP_BINARY and payload[:1] == b"\x01")

    for resizes, line, printed in steps():
        for message in resizes:
            ws.send(OP_BINARY, b"\x04" + message)
        ws.send(OP_BINARY, b"\x00" + line)
        ws.wait_for(lambda frames: printed in stdout(frames))
    frames = ws.receive_until_close()
    ws.close()
    assert frames[-1][0] == OP_CLOSE
    expect_sizes(stdout(frames))
    status = json.loads(b"".join(payload[1:] for op, payload in frames if op == OP_BINARY and payload[:1] == b"\x03"))
    assert status["status"] == "Success"


def test_spdy(runtime):
    client = SPDYClient(tty_url(runtime), ["v4.channel.k8s.io"])
    for streamtype in ("error", "stdin", "stdout", "resize"):
        client.open_stream(streamtype)
    for resizes, line, printed in steps():
        for message in resizes:
            client.send("resize", message + b"\n")
        client.send("stdin", line)
        while printed not in client.output("stdout"):
            client.pump()
    client.run_until_closed()
    client.close()
    assert json.loads(client.output("error"))["status"] == "Success"
    expect_sizes(client.output("stdout"))
