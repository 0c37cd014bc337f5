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
