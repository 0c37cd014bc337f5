"""Listeners: every kind serves the same protocols; unix sockets are private and replace only
stale files; the benchmark route exists only behind its flag; shutdown is graceful."""
import os
import random
import socket
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import start_server, stop_server


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=60)


def test_the_benchmark_route_is_404_without_its_flag(execstream_bin, tmp_path):
    server = start_server(execstream_bin, str(tmp_path / "s.sock"))
    try:
        result = curl("--http2-prior-knowledge", f"{server.url}/debug/bytes?size=10")
        assert result.stdout == "404 page not found\n"
    finally:
        assert stop_server(server) == 0


def test_a_stale_socket_file_is_replaced_and_removed_at_shutdown(execstream_bin, tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays behind, and nobody accepts on it
    server = start_server(execstream_bin, path)
    try:
        assert curl("--http2-prior-knowledge", "--unix-socket", path, "http://localhost/healthz").stdout == "ok\n"
    finally:
        assert stop_server(server) == 0
    assert not os.path.exists(path)


def test_a_live_socket_is_not_stolen(execstream_bin, tmp_path):
    path = str(tmp_path / "live.sock")
    first = start_server(execstream_bin, path)
    try:
        result = subprocess.run(
            [execstream_bin, "serve", "--listen", "127.0.0.1:0", "--cri-socket", path],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode != 0
        assert f"another server is listening on {path}" in result.stderr
        assert curl("--http2-prior-knowledge", "--unix-socket", path, "http://localhost/healthz").stdout == "ok\n"
    finally:
        assert stop_server(first) == 0


def test_a_regular_file_in_the_way_is_not_replaced(execstream_bin, tmp_path):
    path = tmp_path / "file.sock"
    path.write_text("precious")
    result = subprocess.run(
        [execstream_bin, "serve", "--listen", "127.0.0.1:0", "--cri-socket", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "is not a socket" in result.stderr
    assert path.read_text() == "precious"


def test_an_invalid_listen_address_is_one_clear_error(execstream_bin):
    result = subprocess.run([execstream_bin, "serve", "--listen", "nowhere"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "HOST:PORT" in result.stderr


def test_vsock_listener_binds_where_the_kernel_allows(execstream_bin, tmp_path):
    if not hasattr(socket, "AF_VSOCK"):
        pytest.skip("this Python has no AF_VSOCK")
    port = random.randint(20000, 60000)
    try:
        probe = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        probe.bind((socket.VMADDR_CID_ANY, port))
        probe.close()
    except OSError as error:
        pytest.skip(f"this kernel cannot bind AF_VSOCK: {error}")
    server = start_server(execstream_bin, str(tmp_path / "v.sock"), "--listen", f"vsock://:{port}")
    try:
        assert f"listening on vsock://:{port} (control and data planes)\n" in server.output
        # Connecting needs vsock loopback, which CI machines lack (see README): only try it
        # where a local connect works at all.
        try:
            client = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
            client.settimeout(5)
            client.connect((socket.VMADDR_CID_LOCAL if hasattr(socket, "VMADDR_CID_LOCAL") else 1, port))
        except OSError:
            return
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: vsock\r\nConnection: close\r\n\r\n")
        assert client.recv(65536).startswith(b"HTTP/1.1 200")
        client.close()
    finally:
        assert stop_server(server) == 0


def test_graceful_shutdown_lets_an_open_rpc_see_not_serving_and_finish(execstream_bin, tmp_path):
    server = start_server(execstream_bin, str(tmp_path / "g.sock"))
    with grpc.insecure_channel(server.control) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        server.process.terminate()
        # The RPC in flight is not cut off: it learns the server is going away.
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
    assert server.process.wait(timeout=60) == 0


def test_the_unix_socket_accepts_a_socket_path_as_authority(execstream_bin, tmp_path):
    """grpc-go clients of the crictl 1.2x era send the socket path as :authority; RFC 9113
    validation would reset every call with PROTOCOL_ERROR. The unix socket (0600) accepts it."""
    import h2.config
    import h2.connection
    import h2.events

    socket_path = str(tmp_path / "authority.sock")
    running = start_server(execstream_bin, socket_path)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(socket_path)
        sock.settimeout(10)
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_outbound_headers=False))
        conn.initiate_connection()
        message = b""  # grpc.health.v1.HealthCheckRequest{} is empty
        conn.send_headers(
            1,
            [(":method", "POST"), (":scheme", "http"), (":authority", socket_path), (":path", "/grpc.health.v1.Health/Check"),
             ("content-type", "application/grpc"), ("te", "trailers")],
        )
        conn.send_data(1, b"\x00" + len(message).to_bytes(4, "big") + message, end_stream=True)
        sock.sendall(conn.data_to_send())
        headers, ended, reset = {}, False, None
        while not ended and reset is None:
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    headers.update(dict(event.headers))
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
                elif isinstance(event, h2.events.StreamReset):
                    reset = event.error_code
            sock.sendall(conn.data_to_send())
        sock.close()
        assert reset is None
        assert headers.get("grpc-status") == "0"
    finally:
        assert stop_server(running) == 0
