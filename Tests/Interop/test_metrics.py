"""`/metrics` counts exactly what happened: a known workload against a server of this module's own,
then the exposition parsed with prometheus_client's own text parser (the one Prometheus-compatible
scrapers are tested against). The test waits for the server to settle (`/debug/settled`), the
event that says every session has ended, never for time."""
import urllib.request
import uuid

import websocket
from prometheus_client.parser import text_string_to_metric_families

from test_leaks import exec_url, settled
from transport import websocket_v5_exec


def scrape(server, context=None) -> dict:
    """Every sample of `/metrics` on the data plane (HTTP/1.1), keyed by name and sorted labels.
    `context`: the TLS context of an https server."""
    base = f"https://127.0.0.1:{server.port}" if context else server.url
    with urllib.request.urlopen(f"{base}/metrics", timeout=10, context=context) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def refused_upgrade(server) -> int:
    """A WebSocket upgrade with a token nobody issued: the HTTP status it gets."""
    try:
        websocket.create_connection(f"ws://127.0.0.1:{server.port}/exec/{uuid.uuid4().hex}", subprotocols=["v5.channel.k8s.io"], timeout=10)
    except websocket.WebSocketBadStatusException as refused:
        return refused.status_code
    raise AssertionError("an unknown token was upgraded")


def test_metrics_count_a_known_workload_exactly(server, runtime):
    api, service = runtime
    before = scrape(server)
    for _ in range(10):
        assert websocket_v5_exec(exec_url(runtime, ["printf", "hi"])) == b"hi"
    for _ in range(3):
        assert refused_upgrade(server) == 404
    response = service.ExecSync(api.ExecSyncRequest(container_id="demo", cmd=["printf", "sync"], timeout=10), timeout=30)
    assert response.stdout == b"sync" and response.exit_code == 0
    settled(server)
    after = scrape(server)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    session = {"kind": "exec", "transport": "websocket"}
    assert grew("execstream_sessions_started_total", **session) == 10
    assert grew("execstream_sessions_ended_total", outcome="exit_zero", **session) == 10
    assert value(after, "execstream_sessions_active", **session) == 0
    assert grew("execstream_session_bytes_total", direction="out", stream="stdout") == 20
    assert grew("execstream_session_bytes_total", direction="out", stream="stderr") == 0
    assert grew("execstream_session_bytes_total", direction="in", stream="stdin") == 0
    assert grew("execstream_admission_refusals_total", status="404") == 3
    assert grew("execstream_execsync_total", outcome="exit_zero") == 1
    assert grew("execstream_execsync_duration_seconds_count") == 1
    assert grew("execstream_session_duration_seconds_count", kind="exec") == 10
    assert grew("execstream_time_to_first_output_seconds_count", kind="exec") == 10
    assert grew("execstream_process_spawn_seconds_count", kind="exec") == 10
    assert grew("execstream_process_spawn_seconds_count", kind="execsync") == 1
    assert grew("execstream_process_exits_total", **{"kind": "exec", "class": "zero"}) == 10
    assert grew("execstream_process_exits_total", **{"kind": "execsync", "class": "zero"}) == 1
    assert grew("execstream_process_exits_total", **{"kind": "exec", "class": "signal"}) == 0
    # Histogram buckets are cumulative and end with +Inf, which holds every observation.
    assert value(after, "execstream_session_duration_seconds_bucket", kind="exec", le="+Inf") == value(
        after, "execstream_session_duration_seconds_count", kind="exec"
    )
    assert value(after, "execstream_iochannels") >= 0
    build = [(labels, sample) for (name, labels), sample in after.items() if name == "execstream_build_info"]
    assert len(build) == 1 and build[0][1] == 1 and dict(build[0][0])["version"]


def test_port_forwards_and_commands_that_cannot_start_are_sessions_too(server, runtime, http_server):
    api, service = runtime
    before = scrape(server)
    request = b"GET /metered HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    received = 0
    for _ in range(2):
        url = service.PortForward(api.PortForwardRequest(pod_sandbox_id="demo", port=[http_server]), timeout=10).url
        ws = websocket.create_connection(url.replace("http://", "ws://"), subprotocols=["v4.channel.k8s.io"], timeout=30)
        ws.recv_data(), ws.recv_data()  # each channel opens with the port
        ws.send_binary(b"\x00" + request)
        while True:
            opcode, payload = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            assert payload[:1] == b"\x00", payload
            received += len(payload) - 1
        ws.close()
    for command in (["/no/such/command"], ["/etc/passwd"]):
        assert websocket_v5_exec(exec_url(runtime, command)) == b""
    settled(server)
    after = scrape(server)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    forward = {"kind": "portforward", "transport": "websocket"}
    assert grew("execstream_sessions_started_total", **forward) == 2
    assert grew("execstream_sessions_ended_total", outcome="closed", **forward) == 2
    assert value(after, "execstream_sessions_active", **forward) == 0
    assert grew("execstream_session_bytes_total", direction="in", stream="portforward") == 2 * len(request)
    assert grew("execstream_session_bytes_total", direction="out", stream="portforward") == received > 0
    assert grew("execstream_session_duration_seconds_count", kind="portforward") == 2
    assert grew("execstream_sessions_ended_total", kind="exec", transport="websocket", outcome="not_started") == 2
    assert grew("execstream_process_spawn_seconds_count", kind="exec") == 0, "nothing was spawned"


def wait_for(server, predicate) -> dict:
    """Scrapes until `predicate(samples)` holds: a closed connection is counted once the server
    has read its end, an event this waits for (bounded), never a fixed time."""
    import time

    deadline = time.monotonic() + 30
    while not predicate(samples := scrape(server)):
        assert time.monotonic() < deadline, "the metrics never showed it"
    return samples


def test_http2_connections_goaways_and_resets_are_counted_by_code(server, runtime):
    import socket

    from native_client import NativeStream

    urls = [exec_url(runtime, ["sleep", "600"]) for _ in range(2)]
    before = scrape(server)
    active = value(before, "execstream_http2_connections_active")

    # A client that gives up on a running exec (RST_STREAM CANCEL), then leaves (GOAWAY NO_ERROR).
    stream = NativeStream(urls[0])
    while stream.result is None:
        stream.pump_once()
    stream.conn.reset_stream(stream.stream_id, error_code=0x8)
    stream.flush()
    ended = ("execstream_sessions_ended_total", {"kind": "exec", "transport": "native", "outcome": "client_gone"})
    wait_for(server, lambda samples: value(samples, ended[0], **ended[1]) == value(before, ended[0], **ended[1]) + 1)
    stream.conn.close_connection()
    stream.flush()
    stream.sock.close()
    # A client that breaks the protocol after its preface: SETTINGS on a stream (PROTOCOL_ERROR).
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 1]))
        while sock.recv(65536):
            pass
    after = wait_for(server, lambda samples: value(samples, "execstream_http2_connections_active") == active)

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("execstream_http2_connections_total") == 2
    assert grew("execstream_http2_stream_resets_total", direction="received", code="CANCEL") == 1
    assert grew("execstream_http2_goaways_total", direction="received", code="NO_ERROR") == 1
    assert grew("execstream_http2_goaways_total", direction="sent", code="PROTOCOL_ERROR") == 1
    assert grew("execstream_sessions_ended_total", kind="exec", transport="native", outcome="client_gone") == 1


def test_metrics_listen_serves_metrics_and_health_and_nothing_else(execstream_bin, tmp_path):
    import socket
    import urllib.error

    from conftest import start_server, stop_server

    server = start_server(execstream_bin, str(tmp_path / "s.sock"), "--metrics-listen", "127.0.0.1:0")
    try:
        [port] = [port for scheme, host, port, planes in server.listeners if planes == "metrics"]
        assert f"listening on http://127.0.0.1:{port} (metrics)\n" in server.output
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            families = {family.name for family in text_string_to_metric_families(response.read().decode())}
        assert {"execstream_build_info", "execstream_streaming_tokens_in_flight", "execstream_iochannels"} <= families
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.read() == b"ok\n"
        for method, path, status in [("GET", "/exec/some-token", 404), ("GET", "/runtime.v1.RuntimeService/Version", 404), ("POST", "/metrics", 405)]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None)
            try:
                urllib.request.urlopen(request, timeout=10)
                raise AssertionError(f"{method} {path} was served")
            except urllib.error.HTTPError as refused:
                assert refused.code == status
        # HTTP/2 (gRPC's transport) is not spoken here: the connection ends.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert scrape(server)  # the data plane serves /metrics too
    finally:
        assert stop_server(server) == 0


def test_metrics_listen_takes_tcp_addresses_only(execstream_bin, tmp_path):
    import subprocess

    result = subprocess.run(
        [execstream_bin, "serve", "--cri-socket", str(tmp_path / "s.sock"), "--metrics-listen", f"unix://{tmp_path}/m.sock", "--check-config"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == f"execstream: --metrics-listen takes TCP addresses, not unix://{tmp_path}/m.sock\n"
