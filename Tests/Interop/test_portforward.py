"""Port-forward over the WebSocket channel protocol (PROTOCOLS.md §4) to a local HTTP server,
with the Python `kubernetes` package's PortForward client and websocket-client byte checks."""
import socket

import grpc
import pytest
import websocket
from kubernetes.client import Configuration
from kubernetes.stream.ws_client import PortForward, create_websocket




def portforward_url(runtime, ports) -> str:
    api, service = runtime
    return service.PortForward(api.PortForwardRequest(pod_sandbox_id="demo", port=ports), timeout=10).url.replace("http://", "ws://")


def read_http_response(sock) -> bytes:
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(65536)
    head, _, body = response.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += sock.recv(65536)
    return head.split(b"\r\n")[0] + b"\n" + body


def test_kubernetes_client_port_forward_gets_200(runtime, http_server):
    ws = create_websocket(Configuration(), portforward_url(runtime, [http_server]), {"sec-websocket-protocol": "v4.channel.k8s.io"})
    forward = PortForward(ws, [http_server])
    sock = forward.socket(http_server)
    sock.setblocking(True)
    sock.sendall(b"GET /through-the-tunnel HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert read_http_response(sock) == b"HTTP/1.0 200 OK\nhello from /through-the-tunnel"
    forward.close()


@pytest.mark.parametrize("protocol", [None, "v4.channel.k8s.io", "v4.base64.channel.k8s.io"])
def test_channel_bytes_for_each_subprotocol(runtime, http_server, protocol):
    import base64

    ws = websocket.create_connection(portforward_url(runtime, [http_server]), subprotocols=[protocol] if protocol else None, timeout=30)
    prefix = bytes([http_server & 0xFF, http_server >> 8])
    b64 = protocol and "base64" in protocol

    def decode(data):
        if b64:
            return int(chr(data[0])), base64.b64decode(data[1:])
        return data[0], data[1:]

    # Both channels of port 0 open with the port, little-endian: exactly 3 bytes each (binary).
    first = [decode(ws.recv_data()[1]) for _ in range(2)]
    assert sorted(first) == [(0, prefix), (1, prefix)]
    request = b"GET /bytes HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    ws.send("0" + base64.b64encode(request).decode() if b64 else b"\x00" + request, opcode=websocket.ABNF.OPCODE_TEXT if b64 else websocket.ABNF.OPCODE_BINARY)
    data = b""
    while True:
        opcode, message = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            assert message[:2] == b"\x03\xe8"
            break
        channel, payload = decode(message)
        assert channel == 0
        data += payload
    ws.close()
    assert data.startswith(b"HTTP/1.0 200 OK") and data.endswith(b"hello from /bytes")


def test_a_closed_port_reports_on_its_error_channel(runtime):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    ws = websocket.create_connection(portforward_url(runtime, [closed_port]), subprotocols=["v4.channel.k8s.io"], timeout=30)
    errors = b""
    while True:
        opcode, message = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        if message[:1] == b"\x01" and len(message) > 3:
            errors += message[1:]
    ws.close()
    assert f"error forwarding port {closed_port}".encode() in errors


def test_port_forward_is_not_served_in_native_framing(runtime):
    from native_client import NativeStream

    stream = NativeStream(portforward_url(runtime, [80]).replace("ws://", "http://"))
    stream.send(b"", end=True)
    result = stream.wait()
    assert (result.status, result.body) == (400, b"port-forward is served over WebSocket (HTTP/1.1 or HTTP/2) and SPDY/3.1, not in native framing\n")
    stream.close()


def test_websocket_port_forward_over_http2(runtime, http_server):
    from websocket_h2 import OP_BINARY, OP_CLOSE, WebSocketOverH2

    ws = WebSocketOverH2(portforward_url(runtime, [http_server]).replace("ws://", "http://"), ["v4.channel.k8s.io"])
    assert (ws.status, ws.subprotocol) == (200, "v4.channel.k8s.io")
    prefix = bytes([http_server & 0xFF, http_server >> 8])
    ws.wait_for(lambda frames: len(frames) >= 2)
    assert sorted(ws.frames[:2]) == [(OP_BINARY, b"\x00" + prefix), (OP_BINARY, b"\x01" + prefix)]
    ws.send(OP_BINARY, b"\x00GET /over-h2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    frames = ws.receive_until_close()
    assert frames[-1] == (OP_CLOSE, b"\x03\xe8")
    data = b"".join(payload[1:] for opcode, payload in frames[2:-1] if payload[:1] == b"\x00")
    assert data.startswith(b"HTTP/1.0 200 OK") and data.endswith(b"hello from /over-h2")
    ws.close()


# --- SPDY portforward.k8s.io, direct and tunnelled over WebSocket ---


@pytest.mark.parametrize("transport", ["spdy", "spdy-over-websocket", "v2-alias", "spdy-over-websocket-h2"])
def test_spdy_port_forward_two_connections(runtime, http_server, transport):
    from spdy_client import SPDYClient

    url = portforward_url(runtime, []).replace("ws://", "http://")  # SPDY ignores the CRI ports
    if transport == "spdy":
        client = SPDYClient(url, ["portforward.k8s.io"])
        assert (client.status, client.protocol) == (101, "portforward.k8s.io")
    elif transport == "spdy-over-websocket-h2":
        client = SPDYClient.over_websocket_h2(url)
        assert (client.status, client.protocol) == (200, "SPDY/3.1+portforward.k8s.io")
    else:
        subprotocol = "SPDY/3.1+portforward.k8s.io" if transport == "spdy-over-websocket" else "v2.portforward.k8s.io"
        client = SPDYClient.over_websocket(url, subprotocol)
        assert client.protocol.lower() == subprotocol.lower()  # websocket-client lowercases what it reads
    for request_id, path in enumerate(["/first", "/second"]):
        response = client.forward_get(http_server, request_id, path)
        assert response.startswith(b"HTTP/1.0 200 OK") and response.endswith(f"hello from {path}".encode())
        assert client.output(f"error-{request_id}") == b""
    client.close()


def test_spdy_port_forward_error_is_json_on_the_error_stream(runtime):
    from spdy_client import SPDYClient

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = SPDYClient(portforward_url(runtime, []).replace("ws://", "http://"), ["portforward.k8s.io"])
    headers = {"port": str(closed_port), "requestid": "0"}
    client.open_stream("error", fin=True, headers=headers, key="error-0")
    client.open_stream("data", headers=headers, key="data-0")
    while client.streams["error-0"] not in client.fin:
        client.pump()
    import json

    report = json.loads(client.output("error-0"))
    assert report["closeConnection"] is True
    assert f"error forwarding port {closed_port}" in report["message"]
    client.close()


def test_spdy_port_forward_refuses_a_bad_port_and_other_protocols(runtime):
    from spdy_client import SPDYClient

    url = portforward_url(runtime, []).replace("ws://", "http://")
    client = SPDYClient(url, ["v4.channel.k8s.io"])
    assert client.status == 403
    assert client.headers["x-accepted-stream-protocol-versions"] == ["portforward.k8s.io"]
    client.close()
    client = SPDYClient(url, ["portforward.k8s.io"])
    stream = client.open_stream("data", headers={"port": "0", "requestid": "0"})
    assert client.resets.get(stream) == 1  # PROTOCOL_ERROR
    client.close()


def test_graceful_shutdown_is_bounded_with_an_open_port_forward(execstream_bin, cri, tmp_path, http_server):
    """An upgraded connection ignores HTTP/2's GOAWAY drain: the shutdown grace bounds it."""
    from conftest import start_server, stop_server
    from spdy_client import SPDYClient

    running = start_server(execstream_bin, str(tmp_path / "s.sock"), "--shutdown-grace", "1")
    api, stubs = cri
    with grpc.insecure_channel(running.control) as channel:
        url = stubs.RuntimeServiceStub(channel).PortForward(api.PortForwardRequest(pod_sandbox_id="demo"), timeout=10).url
    client = SPDYClient(url, ["portforward.k8s.io"])
    assert client.status == 101
    assert stop_server(running, timeout=30) == 0
    client.close()
