"""HTTP/2 (prior knowledge) and HTTP/1.1 on the same port, checked with real clients:
nghttp, curl and h2load from Debian's nghttp2-client and curl packages."""
import subprocess

import pytest


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def test_nghttp_gets_the_health_route_and_sees_our_settings(server):
    result = run("nghttp", "-v", f"{server.url}/healthz")
    assert result.returncode == 0, result.stderr
    assert ":status: 200" in result.stdout
    assert "\nok\n" in result.stdout
    assert "SETTINGS_ENABLE_CONNECT_PROTOCOL(0x08):1" in result.stdout
    assert "SETTINGS_INITIAL_WINDOW_SIZE(0x04):1048576" in result.stdout


def test_nghttp_gets_404_for_an_unknown_path(server):
    result = run("nghttp", "-v", f"{server.url}/no/such/path")
    assert ":status: 404" in result.stdout
    assert "404 page not found" in result.stdout


@pytest.mark.parametrize("path,status,body", [("/healthz", 200, "ok\n"), ("/exec/unknown", 404, "404 page not found\n")])
def test_curl_with_prior_knowledge(server, path, status, body):
    result = run("curl", "-sS", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_version} %{http_code}", server.url + path)
    assert result.returncode == 0, result.stderr
    text, _, summary = result.stdout.rpartition("\n")
    assert summary == f"2 {status}"
    assert text == body


@pytest.mark.parametrize("path,status", [("/healthz", 200), ("/nope", 404)])
def test_http1_requests_get_http1_responses_on_the_same_port(server, path, status):
    result = run("curl", "-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", server.url + path)
    assert result.stdout == f"1.1 {status}"


def test_curl_over_ipv6_loopback(server):
    if server.port6 is None:
        pytest.skip("this machine has no IPv6 loopback")
    result = run("curl", "-sS", "--http2-prior-knowledge", f"http://[::1]:{server.port6}/healthz")
    assert result.stdout == "ok\n"


def test_curl_over_the_unix_socket(server):
    result = run("curl", "-sS", "--http2-prior-knowledge", "--unix-socket", server.unix_socket, "http://localhost/healthz")
    assert result.stdout == "ok\n"


def test_the_unix_socket_has_mode_0600(server):
    import os
    import stat

    mode = os.stat(server.unix_socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_h2load_completes_ten_thousand_requests_without_failure(server):
    result = run("h2load", "-n", "10000", "-c", "10", "-m", "10", f"{server.url}/healthz", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "10000 succeeded, 0 failed, 0 errored, 0 timeout" in result.stdout, result.stdout


def test_a_large_body_arrives_whole(server):
    size = 64 << 20
    result = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", f"{server.url}/debug/bytes?size={size}"], capture_output=True, timeout=120
    )
    assert result.returncode == 0
    assert len(result.stdout) == size
    assert set(result.stdout) == {ord("x")}


def test_nghttp_as_a_native_exec_client(server, cri, tmp_path):
    """nghttp sends stdin frames from a file and prints the response body: the frames and the
    exit code come back to a client that knows nothing of ExecStream."""
    import struct

    import grpc

    api, stubs = cri
    with grpc.insecure_channel(server.control) as channel:
        request = api.ExecRequest(container_id="demo", cmd=["sh", "-c", "tr a-z A-Z; exit 9"], stdin=True, stdout=True)
        url = stubs.RuntimeServiceStub(channel).Exec(request, timeout=10).url
    body = tmp_path / "stdin.frames"
    payload = b"hello nghttp\n"
    body.write_bytes(struct.pack(">BI", 0, len(payload)) + payload)
    result = subprocess.run(
        ["nghttp", "-v", "-d", str(body), "-H", "content-type: application/vnd.execstream.v1", url], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # -v interleaves frame logs with the body on stdout; a native frame (header and payload) is
    # sent in one DATA frame, so it shows up whole.
    frame = struct.pack(">BI", 1, len(payload)) + payload.upper()
    assert frame in result.stdout
    assert b"execstream-exit-code: 9" in result.stdout
