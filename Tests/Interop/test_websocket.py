"""Remote command over WebSocket (HTTP/1.1 upgrade), driven by the Python `kubernetes` package's
stream client and by `websocket-client` for byte-level checks of every subprotocol."""
import base64
import json
import socket
import subprocess

import grpc
import pytest
import websocket
from kubernetes.client import Configuration
from kubernetes.stream.ws_client import WSClient

SUBPROTOCOLS = [None, "channel.k8s.io", "base64.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io", "v5.channel.k8s.io"]




def exec_url(runtime, cmd, *, stdin=False, stdout=True, stderr=True, tty=False) -> str:
    api, service = runtime
    request = api.ExecRequest(container_id="demo", cmd=cmd, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty)
    return service.Exec(request, timeout=10).url.replace("http://", "ws://")


def receive_all(ws) -> list:
    """Every message until the close frame: (opcode, payload) pairs, the close frame last."""
    messages = []
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        messages.append((opcode, data))
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return messages


def encode(protocol, channel: int, payload: bytes):
    if protocol and "base64" in protocol:
        return websocket.ABNF.OPCODE_TEXT, (str(channel) + base64.b64encode(payload).decode()).encode()
    return websocket.ABNF.OPCODE_BINARY, bytes([channel]) + payload


def decode(protocol, opcode, data: bytes) -> tuple[int, bytes]:
    if protocol and "base64" in protocol:
        assert opcode == websocket.ABNF.OPCODE_TEXT
        return int(chr(data[0])), base64.b64decode(data[1:])
    assert opcode == websocket.ABNF.OPCODE_BINARY
    return data[0], data[1:]


@pytest.mark.parametrize("protocol", SUBPROTOCOLS)
def test_every_subprotocol_byte_for_byte(runtime, protocol):
    # head -c 6 ends without stdin EOF: v1-v4 cannot close stdin over WebSocket.
    url = exec_url(runtime, ["sh", "-c", "head -c 6; echo err >&2; exit 3"], stdin=True)
    ws = websocket.create_connection(url, subprotocols=[protocol] if protocol else None, timeout=30)
    assert ws.getsubprotocol() == protocol
    ws.send(*reversed(encode(protocol, 0, b"hello\n")))
    messages = [decode(protocol, op, data) for op, data in receive_all(ws)[:-1]]
    ws.close()
    # First an empty message on stdout, then the output, then the status.
    assert messages[0] == (1, b"")
    assert b"".join(p for c, p in messages if c == 1) == b"hello\n"
    assert b"".join(p for c, p in messages if c == 2) == b"err\n"
    status = [p for c, p in messages if c == 3]
    assert len(status) == 1 and messages[-1][0] == 3
    if protocol in ("v4.channel.k8s.io", "v4.base64.channel.k8s.io", "v5.channel.k8s.io"):
        assert json.loads(status[0])["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    else:
        assert status[0] == b"command terminated with non-zero exit code: exit status 3"


@pytest.mark.parametrize("protocol", SUBPROTOCOLS)
def test_success_and_the_close_code(runtime, protocol):
    ws = websocket.create_connection(exec_url(runtime, ["true"]), subprotocols=[protocol] if protocol else None, timeout=30)
    messages = receive_all(ws)
    ws.close()
    close_code = int.from_bytes(messages[-1][1][:2], "big")
    assert close_code == 1000
    statuses = [decode(protocol, op, data)[1] for op, data in messages[:-1] if decode(protocol, op, data)[0] == 3]
    if protocol in ("v4.channel.k8s.io", "v4.base64.channel.k8s.io", "v5.channel.k8s.io"):
        assert statuses == [b'{"metadata":{},"status":"Success"}']
    else:
        assert statuses == []  # v1-style protocols write the error channel only on failure


def test_v5_close_ends_stdin(runtime):
    ws = websocket.create_connection(exec_url(runtime, ["wc", "-c"], stdin=True), subprotocols=["v5.channel.k8s.io"], timeout=30)
    ws.send_binary(b"\x00" + b"x" * 1000)
    ws.send_binary(b"\xff\x00")
    messages = receive_all(ws)
    ws.close()
    assert b"".join(data[1:] for _, data in messages if data[:1] == b"\x01").strip() == b"1000"


def test_text_frames_are_accepted_in_binary_protocols(runtime):
    ws = websocket.create_connection(exec_url(runtime, ["head", "-c", "3"], stdin=True), subprotocols=["v4.channel.k8s.io"], timeout=30)
    ws.send("\x00abc")  # what the Python client sends for str data: a text frame
    messages = receive_all(ws)
    ws.close()
    assert b"".join(data[1:] for _, data in messages if data[:1] == b"\x01") == b"abc"


def test_pings_are_answered(runtime):
    ws = websocket.create_connection(exec_url(runtime, ["sh", "-c", "read x"], stdin=True), subprotocols=["v5.channel.k8s.io"], timeout=30)
    ws.ping(b"are-you-there")
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_PONG:
            assert data == b"are-you-there"
            break
    ws.send_binary(b"\x00\n")
    receive_all(ws)
    ws.close()


def test_a_malformed_v5_close_tears_the_connection_down(runtime):
    ws = websocket.create_connection(exec_url(runtime, ["cat"], stdin=True), subprotocols=["v5.channel.k8s.io"], timeout=30)
    ws.send_binary(b"\xff\x00\x00")
    messages = receive_all(ws)
    ws.close()
    assert int.from_bytes(messages[-1][1][:2], "big") == 1002


def http1_status(url: str, headers: dict) -> tuple[int, bytes]:
    host_port = url.split("/")[2]
    host, port = host_port.rsplit(":", 1)
    path = "/" + url.split("/", 3)[3]
    with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as sock:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host_port}"] + [f"{k}: {v}" for k, v in headers.items()] + ["Connection: close", "", ""]
        sock.sendall("\r\n".join(lines).encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}


def test_no_matching_subprotocol_is_403_and_keeps_the_token(runtime):
    url = exec_url(runtime, ["echo", "kept"])
    status, _ = http1_status(url, {**UPGRADE, "Sec-WebSocket-Protocol": "v6.channel.k8s.io, nonsense"})
    assert status == 403
    ws = websocket.create_connection(url, subprotocols=["v5.channel.k8s.io"], timeout=30)
    assert b"".join(data[1:] for _, data in receive_all(ws) if data[:1] == b"\x01") == b"kept\n"
    ws.close()


def test_a_streaming_url_without_an_upgrade_is_400_and_a_bad_token_404(runtime, server):
    status, _ = http1_status(exec_url(runtime, ["true"]), {})
    assert status == 400
    status, body = http1_status(f"ws://127.0.0.1:{server.port}/exec/nope", UPGRADE)
    assert (status, body) == (404, b"404 page not found\n")


def test_the_client_order_wins(runtime):
    ws = websocket.create_connection(exec_url(runtime, ["true"]), subprotocols=["v4.channel.k8s.io", "v5.channel.k8s.io"], timeout=30)
    assert ws.getsubprotocol() == "v4.channel.k8s.io"
    receive_all(ws)
    ws.close()


# --- the kubernetes package's own stream client ---


def kubernetes_client(url: str, protocol: str) -> WSClient:
    return WSClient(Configuration(), url, {"sec-websocket-protocol": protocol}, capture_all=True, binary=True)


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v5.channel.k8s.io"])
def test_kubernetes_client_exec_with_stdin_stdout_stderr_and_exit_code(runtime, protocol):
    client = kubernetes_client(exec_url(runtime, ["sh", "-c", "read line; echo out-$line; echo err-$line >&2; exit 7"], stdin=True), protocol)
    client.write_stdin(b"42\n")
    client.run_forever(timeout=30)
    assert client.read_stdout() == b"out-42\n"
    assert client.read_stderr() == b"err-42\n"
    assert client.returncode == 7


@pytest.mark.parametrize("command,code", [(["/no/such/command"], 127), (["no-such-command"], 127), (["/etc/passwd"], 126)])
def test_kubernetes_client_reads_a_shells_exit_code_for_a_command_that_cannot_start(runtime, command, code):
    # The status is the kubelet's InternalError; its first cause is the ExitCode the Python
    # client reads (it read the error text there before, and failed to parse it).
    client = kubernetes_client(exec_url(runtime, command), "v5.channel.k8s.io")
    client.run_forever(timeout=30)
    assert client.returncode == code


def test_kubernetes_client_resize_reaches_the_terminal(runtime):
    url = exec_url(runtime, ["sh", "-c", "read x; stty size"], stdin=True, stderr=False, tty=True)
    client = kubernetes_client(url, "v5.channel.k8s.io")
    client.write_channel(4, json.dumps({"Width": 101, "Height": 33}))
    client.write_stdin(b"go\n")
    client.run_forever(timeout=30)
    assert client.read_stdout().endswith(b"33 101\r\n")
    assert client.returncode == 0


def test_attach_over_websocket(runtime):
    api, service = runtime
    url = service.Attach(api.AttachRequest(container_id="demo", stdin=True, stdout=True, stderr=True), timeout=10).url
    client = kubernetes_client(url.replace("http://", "ws://"), "v5.channel.k8s.io")
    client.write_stdin(b"echo ws-attach-$((40+2))\n")
    output = b""
    while b"ws-attach-42\n" not in output:
        client.update(timeout=10)
        output += client.read_stdout(timeout=0) or b""
    client.close()


def test_an_idle_connection_is_closed_after_the_stream_idle_timeout(execstream_bin, cri, tmp_path):
    """Nothing read or written for streamIdleTimeoutSeconds: the connection closes (and the exec,
    its client gone, is killed). Pings count as traffic, as for client-go's 5 s pings."""
    from conftest import start_server, stop_server

    config = tmp_path / "execstream.yaml"
    config.write_text("sessions: {streamIdleTimeoutSeconds: 0.5}\n")
    running = start_server(execstream_bin, str(tmp_path / "s.sock"), "--config", str(config))
    try:
        api, stubs = cri
        with grpc.insecure_channel(running.control) as channel:
            url = stubs.RuntimeServiceStub(channel).Exec(api.ExecRequest(container_id="demo", cmd=["sleep", "600"], stdout=True), timeout=10).url
        ws = websocket.create_connection(url.replace("http://", "ws://"), subprotocols=["v5.channel.k8s.io"], timeout=30)
        ws.recv_data()  # the empty first message
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            while True:  # returns only when the server closes the idle connection
                opcode, _ = ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise ConnectionError("closed")
        ws.close()
    finally:
        assert stop_server(running) == 0


# --- RFC 6455: what must fail the connection with 1002 ---


def masked(first: int, payload: bytes, length_byte: int | None = None) -> bytes:
    """A client frame with the given first byte (FIN, RSV, opcode), masked."""
    mask = b"\x11\x22\x33\x44"
    length = bytes([0x80 | (len(payload) if length_byte is None else length_byte)])
    if length_byte == 126:
        length += len(payload).to_bytes(2, "big")
    return bytes([first]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def upgraded_socket(url: str) -> tuple[socket.socket, bytes]:
    """A raw socket upgraded to WebSocket v5 (the 101 checked), and the bytes after the head."""
    host_port = url.split("/")[2]
    host, port = host_port.rsplit(":", 1)
    sock = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
    lines = [f"GET /{url.split('/', 3)[3]} HTTP/1.1", f"Host: {host_port}", "Sec-WebSocket-Protocol: v5.channel.k8s.io"]
    sock.sendall(("\r\n".join(lines + [f"{k}: {v}" for k, v in UPGRADE.items()] + ["", ""])).encode())
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return sock, rest


HOSTILE = {
    "unmasked": bytes([0x82, 0x02, 0x00, 0x61]),
    "rsv1": masked(0xC2, b"\x00a"),
    "rsv3": masked(0x92, b"\x00a"),
    "opcode 3": masked(0x83, b"x"),
    "opcode 7": masked(0x87, b"x"),
    "opcode 0xB": masked(0x8B, b"x"),
    "opcode 0xF": masked(0x8F, b"x"),
    "ping over 125 bytes": masked(0x89, b"p" * 126, length_byte=126),
    "fragmented ping": masked(0x09, b"p"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_frame_rfc_6455_forbids_fails_the_connection_with_1002(runtime, server, name):
    marker = f"{1000 + len(name)}.{abs(hash(name)) % 10**6:06d}"
    sock, received = upgraded_socket(exec_url(runtime, ["sleep", marker], stdin=True))
    sock.sendall(HOSTILE[name])
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    # The last frame before the server closed the connection: close with 1002.
    assert received.endswith(b"\x88\x02\x03\xea"), received[-16:]
    # The session ended as for a vanished client: its process is gone.
    from test_leaks import settled

    settled(server)
    assert subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).stdout == b""


# --- RFC 6455: messages (both carriers assemble them alike) ---

NINE_MIB = b"\x00" + bytes(9 << 20)
MESSAGE_FAILURES = {
    # name: (frames as (opcode, fin, payload), expected close code)
    "a text message that is not UTF-8": ([(1, True, b"\x00\xff\xfe")], 1007),
    "a message of 18 MiB in two fragments (the limit is 16)": ([(2, False, NINE_MIB), (0, True, NINE_MIB)], 1009),
    "a continuation with no message to continue": ([(0, True, b"\x00x")], 1002),
    "a new message inside a fragmented one": ([(2, False, b"\x00a"), (2, True, b"\x00b")], 1002),
}


def server_frames(data: bytes) -> list:
    """The server's (unmasked) frames in `data`: (opcode, payload)."""
    frames = []
    while len(data) >= 2:
        length, offset = data[1] & 0x7F, 2
        if length == 126:
            length, offset = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, offset = int.from_bytes(data[2:10], "big"), 10
        frames.append((data[0] & 0x0F, data[offset : offset + length]))
        data = data[offset + length :]
    return frames


@pytest.mark.parametrize("name", MESSAGE_FAILURES)
def test_a_bad_message_fails_the_connection_with_its_close_code_over_http1(runtime, server, name):
    from websocket_h2 import client_frame

    frames, code = MESSAGE_FAILURES[name]
    sock, received = upgraded_socket(exec_url(runtime, ["cat"], stdin=True))
    for opcode, fin, payload in frames:
        sock.sendall(client_frame(opcode, payload, fin, zero_mask=len(payload) > 4096))
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    opcode, payload = server_frames(received)[-1]
    assert opcode == 8 and int.from_bytes(payload[:2], "big") == code, payload
    assert server.is_running()


@pytest.mark.parametrize("name", MESSAGE_FAILURES)
def test_a_bad_message_fails_the_stream_with_its_close_code_over_http2(runtime, name):
    from websocket_h2 import OP_CLOSE, WebSocketOverH2

    frames, code = MESSAGE_FAILURES[name]
    ws = WebSocketOverH2(exec_url(runtime, ["cat"], stdin=True), ["v5.channel.k8s.io"])
    for opcode, fin, payload in frames:
        ws.send(opcode, payload, fin, zero_mask=len(payload) > 4096)
    received = ws.receive_until_close()
    ws.close()
    assert received[-1][0] == OP_CLOSE and int.from_bytes(received[-1][1][:2], "big") == code, received[-1]
