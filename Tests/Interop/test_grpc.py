"""The gRPC transport, checked with Python's grpcio and grpcio-health-checking (and raw h2
where the server's own behaviour must be seen without a client library in between)."""
import concurrent.futures
import socket

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(params=["tcp", "unix"])
def channel(server, request):
    target = f"127.0.0.1:{server.port}" if request.param == "tcp" else f"unix://{server.unix_socket}"
    with grpc.insecure_channel(target) as channel:
        yield channel


def test_check(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    assert stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == SERVING
    assert stub.Check(health_pb2.HealthCheckRequest(service="grpc.health.v1.Health"), timeout=10).status == SERVING


def test_check_of_an_unknown_service_is_not_found(channel):
    with pytest.raises(grpc.RpcError) as error:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_streams_the_current_status_then_ends_at_the_deadline(channel):
    responses = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=1)
    assert next(responses).status == SERVING
    with pytest.raises(grpc.RpcError) as error:
        next(responses)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_watch_of_an_unknown_service_says_so(channel):
    responses = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert next(responses).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    responses.cancel()


def test_a_cancelled_watch_leaves_the_connection_usable(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for _ in range(20):
        responses = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(responses).status == SERVING
        responses.cancel()
    assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING


def test_an_unknown_method_is_unimplemented_on_the_control_plane_and_refused_on_the_data_plane(request, channel):
    with pytest.raises(grpc.RpcError) as error:
        channel.unary_unary("/no.such.Service/Method")(b"", timeout=10)
    # Only health is data plane: anything else, known or not, is refused there (default deny).
    expected = grpc.StatusCode.PERMISSION_DENIED if request.node.callspec.params["channel"] == "tcp" else grpc.StatusCode.UNIMPLEMENTED
    assert error.value.code() == expected


def test_a_message_over_the_limit_is_resource_exhausted(channel):
    with pytest.raises(grpc.RpcError) as error:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="x" * (16 << 20)), timeout=30)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_compressed_requests_are_unimplemented(channel):
    with pytest.raises(grpc.RpcError) as error:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10, compression=grpc.Compression.Gzip)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_one_hundred_concurrent_rpcs_on_one_connection(server):
    with grpc.insecure_channel(server.control) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watches = [stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30) for _ in range(100)]
        checks = [stub.Check.future(health_pb2.HealthCheckRequest(service=""), timeout=30) for _ in range(100)]
        # All 200 streams are open at once: every Watch answers while the others stay open.
        assert all(next(watch).status == SERVING for watch in watches)
        assert all(check.result().status == SERVING for check in checks)
        for watch in watches:
            watch.cancel()


def raw_grpc_request(port: int, path: str, headers: list, body: bytes, read_until_closed=True):
    """Sends one gRPC request with h2 and returns (response headers, data, trailers, reset code)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        connection.initiate_connection()
        request = [(":method", "POST"), (":scheme", "http"), (":authority", "localhost"), (":path", path),
                   ("content-type", "application/grpc"), ("te", "trailers")] + headers
        connection.send_headers(1, request)
        connection.send_data(1, body, end_stream=True)
        sock.sendall(connection.data_to_send())
        response, data, trailers, reset = None, b"", None, None
        while trailers is None and reset is None:
            chunk = sock.recv(65536)
            if not chunk:
                break
            for event in connection.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    response = dict(event.headers)
                    if event.stream_ended:
                        trailers = response
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    connection.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers = dict(event.headers)
                elif isinstance(event, h2.events.StreamReset):
                    reset = event.error_code
            sock.sendall(connection.data_to_send())
        return response, data, trailers, reset


def grpc_message(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def test_the_server_ends_an_rpc_at_its_grpc_timeout(server):
    # No client library enforces this deadline: the DEADLINE_EXCEEDED comes from the server.
    request = health_pb2.HealthCheckRequest(service="").SerializeToString()
    response, data, trailers, _ = raw_grpc_request(
        server.port, "/grpc.health.v1.Health/Watch", [("grpc-timeout", "300m")], grpc_message(request)
    )
    assert response[":status"] == "200"
    assert data[:1] == b"\x00"  # the first status message arrived before the deadline
    assert trailers["grpc-status"] == "4"


def test_a_unary_call_over_raw_h2_has_exact_framing_and_trailers(server):
    request = health_pb2.HealthCheckRequest(service="").SerializeToString()
    response, data, trailers, _ = raw_grpc_request(server.port, "/grpc.health.v1.Health/Check", [], grpc_message(request))
    assert response[":status"] == "200" and response["content-type"] == "application/grpc"
    expected = health_pb2.HealthCheckResponse(status=SERVING).SerializeToString()
    assert data == grpc_message(expected)
    assert trailers["grpc-status"] == "0"


def test_trailers_only_errors_carry_a_percent_encoded_message(server):
    request = health_pb2.HealthCheckRequest(service="caf\u00e9 100%").SerializeToString()
    response, data, trailers, _ = raw_grpc_request(server.port, "/grpc.health.v1.Health/Check", [], grpc_message(request))
    assert data == b""
    assert trailers is response, "a trailers-only response is a single HEADERS frame"
    assert trailers["grpc-status"] == "5"
    assert trailers["grpc-message"] == "unknown service 'caf%C3%A9 100%25'"


def test_a_non_grpc_content_type_on_a_grpc_path_is_not_routed_to_grpc(server):
    response, _, _, _ = raw_grpc_request(server.port, "/grpc.health.v1.Health/Check", [], b"")
    assert response[":status"] == "200"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        connection.initiate_connection()
        connection.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "x"),
                                    (":path", "/grpc.health.v1.Health/Check"), ("content-type", "text/plain")], end_stream=True)
        sock.sendall(connection.data_to_send())
        status = None
        while status is None:
            for event in connection.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[":status"]
        assert status == "404"
