"""Logs as an operator reads them: with `--log-format json`, every line the server writes (other
than the "listening on" lines scripts wait for) is one JSON object; the audit log has one line
per control call and one per session's end with the fields an incident needs; and no line ever
holds a streaming token or a byte of stdin."""
import json
import subprocess
import urllib.parse
import uuid

import pytest
import websocket

from conftest import start_server, stop_server
from transport import websocket_v5_exec


def exec_url(service, api, cmd, stdin=False) -> str:
    request = api.ExecRequest(container_id="demo", cmd=cmd, stdin=stdin, stdout=True, stderr=True)
    return service.Exec(request, timeout=10).url


def all_lines(server) -> list:
    """Everything the server wrote, until it exited."""
    lines = list(server.output)
    while (line := server.lines.get(timeout=30)) is not None:
        lines.append(line)
    return [line.rstrip("\n") for line in lines]


AUDIT_ID = "5b7e1f0c-audit-id-of-the-api-server"
FORWARDED = b"GET /audited HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def test_json_logs_carry_an_audit_line_per_call_and_per_session_and_no_secret(execstream_bin, tmp_path, cri, http_server):
    import grpc

    api, stubs = cri
    server = start_server(execstream_bin, str(tmp_path / "s.sock"), "--log-level", "info", "--log-format", "json")
    secret = f"stdin-secret-{uuid.uuid4().hex}".encode()
    tokens = []
    try:
        with grpc.insecure_channel(server.control) as channel:
            service = stubs.RuntimeServiceStub(channel)
            for _ in range(2):
                url = exec_url(service, api, ["cat"], stdin=True)
                tokens.append(urllib.parse.urlsplit(url).path.rsplit("/", 1)[1])
                assert websocket_v5_exec(url, stdin=secret) == secret
            response = service.ExecSync(api.ExecSyncRequest(container_id="demo", cmd=["sh", "-c", "exit 3"], timeout=10), timeout=30)
            assert response.exit_code == 3
            assert websocket_v5_exec(exec_url(service, api, ["/no/such/command"])) == b""
            # A port-forward as the kubelet's proxy passes it on: with the API server's Audit-Id.
            url = service.PortForward(api.PortForwardRequest(pod_sandbox_id="demo", port=[http_server]), timeout=10).url
            tokens.append(urllib.parse.urlsplit(url).path.rsplit("/", 1)[1])
            ws = websocket.create_connection(
                url.replace("http://", "ws://"), subprotocols=["v4.channel.k8s.io"], header=[f"Audit-Id: {AUDIT_ID}"], timeout=30
            )
            ws.recv_data(), ws.recv_data()
            ws.send_binary(b"\x00" + FORWARDED)
            while ws.recv_data(control_frame=True)[0] != websocket.ABNF.OPCODE_CLOSE:
                pass
            ws.close()
    finally:
        assert stop_server(server) == 0
    lines = all_lines(server)

    records = []
    for line in lines:
        if line.startswith("listening on "):
            continue
        record = json.loads(line)  # every other line is one JSON object
        assert {"time", "level", "logger", "message"} <= record.keys(), line
        records.append(record)
    for line in lines:
        assert secret.decode() not in line, f"stdin in a log line: {line}"
        for token in tokens:
            assert token not in line, f"a streaming token in a log line: {line}"

    audit = [record for record in records if record.get("audit") is True]
    calls = [record for record in audit if record["event"] == "call"]
    sessions = [record for record in audit if record["event"] == "session"]

    execs = [call for call in calls if call["method"] == "Exec" and call["command"] == "cat"]
    assert len(execs) == 2
    for call in execs:
        assert call["container"] == "demo" and call["command"] == "cat" and call["outcome"] == "url_issued"
        assert call["peer"].startswith("unix uid=")
    [sync] = [call for call in calls if call["method"] == "ExecSync"]
    assert sync["command"] == "sh -c exit 3" and sync["outcome"] == "exit_nonzero" and sync["exitCode"] == 3
    assert isinstance(sync["durationMs"], int)

    [not_started] = [session for session in sessions if session["outcome"] == "not_started"]
    assert not_started["command"] == "/no/such/command" and not_started["exitCode"] == 127
    [forward] = [session for session in sessions if session["kind"] == "portforward"]
    assert forward["transport"] == "websocket" and forward["container"] == "demo" and forward["outcome"] == "closed"
    assert forward["auditID"] == AUDIT_ID and forward["bytesToService"] == len(FORWARDED) and forward["bytesFromService"] > 0
    assert not {"command", "exitCode", "stdinBytes", "stdoutBytes", "stderrBytes"} & forward.keys()

    sessions = [session for session in sessions if session is not not_started and session is not forward]
    assert len(sessions) == 2
    for session in sessions:
        assert "auditID" not in session
        assert session["kind"] == "exec" and session["transport"] == "websocket" and session["container"] == "demo"
        assert session["command"] == "cat" and session["outcome"] == "exit_zero" and session["exitCode"] == 0
        assert session["peer"].startswith("token holder at ")
        assert session["stdinBytes"] == len(secret) and session["stdoutBytes"] == len(secret) and session["stderrBytes"] == 0
        assert isinstance(session["durationMs"], int) and session["durationMs"] >= 0
        assert session["level"] == "notice"


@pytest.mark.parametrize(
    "arguments, config, message",
    [
        (["--log-level", "verbose"], None, 'unknown log level "verbose"'),
        (["--log-format", "yaml"], None, 'unknown log format "yaml"'),
        ([], "logLevel: verbose\n", 'unknown log level "verbose"'),
        ([], "logFormat: xml\n", 'unknown logFormat "xml"'),
    ],
)
def test_an_unknown_log_level_or_format_is_an_error(execstream_bin, tmp_path, arguments, config, message):
    if config is not None:
        path = tmp_path / "config.yaml"
        path.write_text(config)
        arguments = arguments + ["--config", str(path)]
    result = subprocess.run([execstream_bin, "serve", *arguments, "--check-config"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr


def test_text_logs_name_level_and_message(execstream_bin, tmp_path):
    server = start_server(execstream_bin, str(tmp_path / "s.sock"), "--log-level", "info", "--log-format", "text")
    assert stop_server(server) == 0
    lines = [line for line in all_lines(server) if not line.startswith("listening on ")]
    started = [line for line in lines if " info execstream: listening " in line]
    assert started, lines
    assert all(line[:4].isdigit() and line[10] == "T" for line in lines), lines
