"""TLS on the TCP listeners (swift-nio-ssl): ALPN h2 and http/1.1, TLS 1.2 or newer, https://
streaming URLs, mutual TLS on the control plane (and optionally on the data plane), and SIGHUP
reloads, checked with openssl, curl, nghttp, h2load, grpcio, websocket-client, the kubernetes
client, Python h2 and our own CLI. Certificates are made at test time (pki.py)."""
import json
import queue
import re
import shutil
import signal
import subprocess
import time

import grpc
import pytest
import websocket
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubernetes.client import Configuration
from kubernetes.stream.ws_client import WSClient

import transport
from conftest import start_server, stop_server
from native_client import STDIN, NativeStream, frame
from spdy_client import SPDYClient
from websocket_h2 import OP_BINARY, WebSocketOverH2


def tls_flags(pki, cert=None, key=None) -> list:
    return ["--tls-cert", str(cert or pki.server_cert), "--tls-key", str(key or pki.server_key),
            "--control-listen", "127.0.0.1:0", "--control-client-ca", str(pki.ca)]


@pytest.fixture(scope="module")
def tls_server(execstream_bin, tmp_path_factory, pki):
    directory = tmp_path_factory.mktemp("tls")
    running = start_server(execstream_bin, str(directory / "s.sock"), *tls_flags(pki), "--log-level", "debug")
    yield running
    assert stop_server(running) == 0


@pytest.fixture
def trusted(pki):
    """Python clients trust the test CA and present no certificate."""
    transport.trust(str(pki.ca))


def read(path) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def control_channel(server, pki, cert=None, key=None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(pki.ca),
        private_key=read(key) if key else None,
        certificate_chain=read(cert) if cert else None,
    )
    return grpc.secure_channel(f"127.0.0.1:{server.control_port}", credentials)


def wait_for_line(server, pattern: str, timeout: float = 30) -> str:
    """The next line the server prints that matches `pattern` (the server's own report)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = server.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"the server printed no line matching {pattern!r}")
        if line is None:
            raise AssertionError("the server exited")
        if re.search(pattern, line):
            return line


def exec_url(server, cri, cmd, **streams) -> str:
    api, stubs = cri
    with grpc.insecure_channel(server.control) as channel:
        request = api.ExecRequest(container_id="demo", cmd=cmd, stdout=True, **streams)
        return stubs.RuntimeServiceStub(channel).Exec(request, timeout=10).url


def openssl_client(port: int, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args], input=stdin, capture_output=True, timeout=60)


# --- the handshake ---


@pytest.mark.parametrize("offered, chosen", [("h2,http/1.1", "h2"), ("http/1.1", "http/1.1"), ("h2", "h2")])
def test_alpn_offers_h2_and_http_1_1(tls_server, pki, offered, chosen):
    result = openssl_client(tls_server.port, "-alpn", offered, "-CAfile", str(pki.ca))
    assert f"ALPN protocol: {chosen}" in result.stdout.decode()
    assert "Verify return code: 0 (ok)" in result.stdout.decode()


def test_tls_1_2_or_newer_only(tls_server, pki):
    assert "Protocol  : TLSv1.2" in openssl_client(tls_server.port, "-tls1_2", "-CAfile", str(pki.ca)).stdout.decode()
    refused = openssl_client(tls_server.port, "-tls1_1")
    assert refused.returncode != 0
    assert b"alert protocol version" in refused.stderr or b"no protocols available" in refused.stderr


@pytest.mark.parametrize("version, flag", [("2", "--http2"), ("1.1", "--http1.1")])
def test_curl_reaches_healthz_over_both_http_versions(tls_server, pki, version, flag):
    result = subprocess.run(
        ["curl", "-sS", flag, "--cacert", str(pki.ca), "-w", "\n%{http_version}", f"https://127.0.0.1:{tls_server.port}/healthz"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.stdout == f"ok\n\n{version}", result.stderr


def test_h2load_over_tls(tls_server):
    result = subprocess.run(
        ["h2load", "-n", "2000", "-c", "4", "-m", "10", f"https://127.0.0.1:{tls_server.port}/healthz"],
        capture_output=True, text=True, timeout=300,
    )
    assert "2000 succeeded, 0 failed, 0 errored" in result.stdout, result.stdout + result.stderr
    assert "Application protocol: h2" in result.stdout


# --- the control plane over mutual TLS ---


def test_grpcio_with_a_client_certificate_runs_version_and_exec_sync(tls_server, pki, cri):
    api, stubs = cri
    with control_channel(tls_server, pki, pki.client_cert, pki.client_key) as channel:
        service = stubs.RuntimeServiceStub(channel)
        assert service.Version(api.VersionRequest(), timeout=10).runtime_name == "execstream"
        response = service.ExecSync(api.ExecSyncRequest(container_id="demo", cmd=["echo", "-n", "over mTLS"]), timeout=30)
        assert (response.stdout, response.exit_code) == (b"over mTLS", 0)
    # The call names its peer by the certificate's subject (RFC 4514: last name first).
    line = wait_for_line(tls_server, r"method=runtime\.v1\.RuntimeService/ExecSync")
    assert 'peer=certificate "CN=kubelet,O=system:nodes" at ipv4:127.0.0.1:' in line


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate"])
def test_the_control_listener_refuses_the_handshake_of_an_unknown_client(tls_server, pki, cri, who):
    api, stubs = cri
    cert, key = (None, None) if who == "no certificate" else (pki.stranger_cert, pki.stranger_key)
    with control_channel(tls_server, pki, cert, key) as channel:
        with pytest.raises(grpc.RpcError) as error:
            stubs.RuntimeServiceStub(channel).Version(api.VersionRequest(), timeout=10)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_on_the_data_plane_still_refuses_control_calls(tls_server, pki, cri):
    api, stubs = cri
    credentials = grpc.ssl_channel_credentials(root_certificates=read(pki.ca))
    with grpc.secure_channel(f"127.0.0.1:{tls_server.port}", credentials) as channel:
        with pytest.raises(grpc.RpcError) as error:
            stubs.RuntimeServiceStub(channel).ExecSync(api.ExecSyncRequest(container_id="demo", cmd=["true"]), timeout=10)
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert f"listener 127.0.0.1:{tls_server.port} (TLS) serves only the data plane" in error.value.details()
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING


def test_the_cli_with_tls_flags(execstream_bin, tls_server, pki):
    flags = ["--server", f"127.0.0.1:{tls_server.control_port}", "--tls-ca", str(pki.ca),
             "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]
    result = subprocess.run([execstream_bin, "exec", *flags, "demo", "--", "sh", "-c", "echo cli-tls; exit 6"], capture_output=True, timeout=60)
    assert (result.stdout, result.returncode) == (b"cli-tls\n", 6), result.stderr
    result = subprocess.run([execstream_bin, "exec-sync", "--json", *flags, "demo", "--", "echo", "sync"], capture_output=True, timeout=60)
    assert json.loads(result.stdout)["stdout"] == "sync\n"
    named = subprocess.run(
        [execstream_bin, "exec", *flags, "--tls-server-name", "localhost", "demo", "--", "echo", "named"], capture_output=True, timeout=60
    )
    assert named.stdout == b"named\n", named.stderr
    without = subprocess.run(
        [execstream_bin, "exec", *flags[:4], "demo", "--", "echo", "never"], capture_output=True, timeout=60
    )
    assert without.returncode == 1 and without.stdout == b""
    assert b"TLS: the server requires a client certificate (--tls-cert and --tls-key)" in without.stderr, without.stderr
    untrusted = subprocess.run(
        [execstream_bin, "exec", *flags[:2], "--tls-ca", str(pki.other_ca), *flags[4:], "demo", "--", "echo", "never"],
        capture_output=True, timeout=60,
    )
    assert untrusted.returncode == 1
    assert b"TLS: the server's certificate is not trusted" in untrusted.stderr, untrusted.stderr


# --- streaming over TLS: every transport ---


def test_streaming_urls_are_https(tls_server, cri):
    url = exec_url(tls_server, cri, ["true"])
    # The first data-plane listener: [::1] where the machine has IPv6 loopback.
    data = f"[::1]:{tls_server.port6}" if tls_server.port6 else f"127.0.0.1:{tls_server.port}"
    assert url.startswith(f"https://{data}/exec/")


def test_native_http2_exec_over_tls(tls_server, cri, trusted):
    stream = NativeStream(exec_url(tls_server, cri, ["sh", "-c", "tr a-z A-Z; exit 3"], stdin=True))
    stream.send(frame(STDIN, b"hello tls\n"))
    stream.send(b"", end=True)
    result = stream.wait()
    assert (result.stdout, result.exit_code) == (b"HELLO TLS\n", 3)


def test_nghttp_exec_over_tls(tls_server, cri, tmp_path):
    url = exec_url(tls_server, cri, ["echo", "nghttp over tls"])
    body = tmp_path / "empty"
    body.write_bytes(b"")
    result = subprocess.run(
        ["nghttp", "-d", str(body), "-H", "content-type: application/vnd.execstream.v1", url], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    payload = b"nghttp over tls\n"
    assert bytes([1]) + len(payload).to_bytes(4, "big") + payload in result.stdout


def test_websocket_client_exec_over_wss(tls_server, cri, pki):
    url = exec_url(tls_server, cri, ["sh", "-c", "echo wss; exit 2"]).replace("https://", "wss://")
    ws = websocket.create_connection(url, subprotocols=["v5.channel.k8s.io"], timeout=30, sslopt={"ca_certs": str(pki.ca)})
    messages = []
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        messages.append(data)
    ws.close()
    assert bytes([1]) + b"wss\n" in messages
    status = json.loads(next(m[1:] for m in messages if m[0] == 3))
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]


def test_kubernetes_ws_client_exec_over_wss(tls_server, cri, pki):
    configuration = Configuration()
    configuration.ssl_ca_cert = str(pki.ca)
    url = exec_url(tls_server, cri, ["sh", "-c", "read line; echo out-$line; exit 7"], stdin=True).replace("https://", "wss://")
    client = WSClient(configuration, url, {"sec-websocket-protocol": "v5.channel.k8s.io"}, capture_all=True, binary=True)
    client.write_stdin(b"42\n")
    client.run_forever(timeout=30)
    assert client.read_stdout() == b"out-42\n"
    assert client.returncode == 7


def test_spdy_exec_over_tls(tls_server, cri, trusted):
    client = SPDYClient(exec_url(tls_server, cri, ["echo", "-n", "spdy over tls"]), ["v4.channel.k8s.io"])
    assert client.status == 101
    client.open_stream("error")
    client.open_stream("stdout")
    client.run_until_closed()
    client.close()
    assert client.output("stdout") == b"spdy over tls"


def test_websocket_over_http2_exec_over_tls(tls_server, cri, trusted):
    ws = WebSocketOverH2(exec_url(tls_server, cri, ["echo", "rfc 8441 over tls"]), ["v5.channel.k8s.io"])
    assert ws.status == 200
    frames = ws.receive_until_close()
    ws.close()
    assert (OP_BINARY, bytes([1]) + b"rfc 8441 over tls\n") in frames


# --- mutual TLS on the data plane, and reloads ---


def test_data_plane_mutual_tls_needs_a_certificate_from_the_client_ca(execstream_bin, tmp_path, pki, cri):
    running = start_server(
        execstream_bin, str(tmp_path / "s.sock"), "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
        "--tls-client-ca", str(pki.ca), "--log-level", "debug",
    )
    try:
        assert f"listening on https://127.0.0.1:{running.port} (data plane, mutual TLS)\n" in running.output
        transport.trust(str(pki.ca))
        with pytest.raises(OSError):  # the handshake fails, or the first read after it
            NativeStream(exec_url(running, cri, ["echo", "never"])).wait()
        transport.trust(str(pki.ca), str(pki.client_cert), str(pki.client_key))
        result = NativeStream(exec_url(running, cri, ["echo", "-n", "with a certificate"])).wait()
        assert (result.stdout, result.exit_code) == (b"with a certificate", 0)
        line = wait_for_line(running, r"kind=exec .*streaming session|streaming session")
        assert 'peer=certificate "CN=kubelet,O=system:nodes"' in line
    finally:
        transport.trust(str(pki.ca))
        assert stop_server(running) == 0


def served_subject(port: int, pki) -> str:
    result = openssl_client(port, "-CAfile", str(pki.ca))
    return re.search(r"subject=(.*)", result.stdout.decode()).group(1)


def test_sighup_reloads_the_certificate_and_open_streams_go_on(execstream_bin, tmp_path, pki, cri, trusted):
    cert = tmp_path / "tls.crt"
    shutil.copy(pki.server_cert, cert)
    running = start_server(execstream_bin, str(tmp_path / "s.sock"), *tls_flags(pki, cert=cert), "--log-level", "info")
    try:
        assert "CN = execstream-server" in served_subject(running.port, pki)
        # A stream open across the reload: cat echoes a line before and after it.
        stream = NativeStream(exec_url(running, cri, ["cat"], stdin=True))
        stream.send(frame(STDIN, b"before\n"))
        while stream.result is None or b"before\n" not in stream.result.stdout:
            stream.pump_once()

        shutil.copy(pki.renewed_cert, cert)
        running.process.send_signal(signal.SIGHUP)
        wait_for_line(running, "TLS certificates reloaded")
        assert "CN = execstream-server-renewed" in served_subject(running.port, pki)
        assert "CN = execstream-server-renewed" in served_subject(running.control_port, pki)

        stream.send(frame(STDIN, b"after\n"))
        stream.send(b"", end=True)
        result = stream.wait()
        assert (result.stdout, result.exit_code) == (b"before\nafter\n", 0)

        # A file that does not load leaves the served certificate as it was.
        cert.write_text("not a certificate")
        running.process.send_signal(signal.SIGHUP)
        wait_for_line(running, "TLS certificates not reloaded")
        assert "CN = execstream-server-renewed" in served_subject(running.port, pki)
    finally:
        assert stop_server(running) == 0


@pytest.mark.parametrize("flags, message", [
    (["--control-listen", "127.0.0.1:0"], "needs TLS with client certificates"),
    (["--tls-cert", "/nonexistent.crt"], "TLS needs both --tls-cert and --tls-key"),
    (["--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"], "cannot load the TLS certificate /nonexistent.crt"),
    (["--tls-client-ca", "/ca.crt"], "--tls-client-ca needs TLS: --tls-cert and --tls-key"),
    (["--control-listen", "127.0.0.1:0", "--tls-cert", "{cert}", "--tls-key", "{key}"], "needs a CA for client certificates"),
    (["--tls-cert", "{key}", "--tls-key", "{key}"], "cannot load the TLS certificate"),
    (["--socket-group", "no-such-group-execstream"], 'unknown socket group "no-such-group-execstream"'),
])
def test_a_trust_setting_that_cannot_work_is_one_clear_line(execstream_bin, tmp_path, pki, flags, message):
    flags = [flag.format(cert=pki.server_cert, key=pki.server_key) for flag in flags]
    result = subprocess.run(
        [execstream_bin, "serve", "--listen", "127.0.0.1:0", "--cri-socket", str(tmp_path / "s.sock"), *flags],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "s.sock").exists()


def test_tls_handshakes_are_counted_by_plane_and_outcome(tls_server, pki, cri):
    import socket
    import ssl

    from test_metrics import scrape, value

    api, stubs = cri
    context = ssl.create_default_context(cafile=str(pki.ca))
    before = scrape(tls_server, context)
    subprocess.run(["curl", "-sS", "--cacert", str(pki.ca), f"https://127.0.0.1:{tls_server.port}/healthz"], check=True, capture_output=True, timeout=60)
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to a TLS port
        while sock.recv(65536):
            pass
    with control_channel(tls_server, pki, pki.client_cert, pki.client_key) as channel:
        assert stubs.RuntimeServiceStub(channel).Version(api.VersionRequest(), timeout=10).runtime_name == "execstream"
    with control_channel(tls_server, pki) as channel:
        with pytest.raises(grpc.RpcError):
            stubs.RuntimeServiceStub(channel).Version(api.VersionRequest(), timeout=10)
    after = scrape(tls_server, context)

    def grew(**labels) -> float:
        return value(after, "execstream_tls_handshakes_total", **labels) - value(before, "execstream_tls_handshakes_total", **labels)

    assert grew(plane="data", outcome="ok") == 2  # curl, and the second scrape
    assert grew(plane="data", outcome="failed") == 1
    assert grew(plane="control", outcome="ok") == 1
    assert grew(plane="control", outcome="failed") >= 1  # grpcio may try more than once
