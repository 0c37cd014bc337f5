"""The `execstream` command line, as a user runs it."""
import contextlib
import socket
import subprocess

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def test_version_names_the_runtime_and_the_linked_nghttp2(execstream_bin, pkg_config):
    result = run(execstream_bin, "version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("execstream ")
    assert lines[0].split(" ", 1)[1].count(".") == 2, "a semantic version"
    assert "CRI API: v1" in lines
    system_nghttp2 = run(pkg_config, "--modversion", "libnghttp2").stdout.strip()
    assert f"nghttp2: {system_nghttp2}" in lines


def test_an_unknown_command_is_one_clear_error_and_a_non_zero_exit(execstream_bin):
    result = run(execstream_bin, "no-such-command")
    assert result.returncode != 0
    assert "no-such-command" in result.stderr
    assert result.stdout == ""


def test_help_lists_the_commands(execstream_bin):
    result = run(execstream_bin, "--help")
    assert result.returncode == 0
    assert "version" in result.stdout


def client(execstream_bin, server, *args, input=None):
    """The CLI against the server's control plane, its unix socket."""
    address = f"unix://{server.unix_socket}"
    return subprocess.run([execstream_bin, *args[:1], "--server", address, *args[1:]], capture_output=True, input=input, timeout=120)


def test_exec_prints_the_output_and_exits_with_the_remote_code(execstream_bin, server):
    result = client(execstream_bin, server, "exec", "demo", "--", "sh", "-c", "echo hi; exit 3")
    assert result.stdout == b"hi\n"
    assert result.returncode == 3


def test_control_commands_on_the_plain_tcp_port_are_refused_with_a_clear_error(execstream_bin, server):
    result = subprocess.run(
        [execstream_bin, "exec", "--server", f"127.0.0.1:{server.port}", "demo", "--", "echo", "never"], capture_output=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout == b""
    message = result.stderr.decode()
    assert "runtime.v1.RuntimeService/Exec is a control-plane call" in message
    assert f"listener 127.0.0.1:{server.port} (plain TCP)" in message


def test_exec_keeps_stdout_and_stderr_apart(execstream_bin, server):
    result = client(execstream_bin, server, "exec", "demo", "--", "sh", "-c", "echo out; echo err >&2")
    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")


def test_exec_with_stdin_passes_every_byte_and_the_end(execstream_bin, server):
    data = bytes(range(256)) * 4096
    result = client(execstream_bin, server, "exec", "-i", "demo", "--", "sha256sum", input=data)
    import hashlib

    assert result.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    assert result.returncode == 0


def test_exec_death_by_signal_exits_128_plus_n(execstream_bin, server):
    assert client(execstream_bin, server, "exec", "demo", "--", "sh", "-c", "kill -KILL $$").returncode == 137


def test_exec_errors_are_one_line_and_exit_1(execstream_bin, server):
    result = client(execstream_bin, server, "exec", "no-such-container", "--", "true")
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1
    assert 'container "no-such-container" not found' in result.stderr.decode()


@pytest.mark.parametrize("verb", ["exec", "exec-sync"])
def test_a_command_that_cannot_start_exits_as_a_shell_does(execstream_bin, server, verb):
    # 127: no such command; 126: it exists but cannot run (a file without an execute bit, a
    # directory), as shells, docker and podman say. The reason is one line, without the kubelet's
    # "Internal error occurred".
    cases = [
        (["/no/such/binary"], 127, 'execstream: exec: "/no/such/binary": No such file or directory\n'),
        (["no-such-command"], 127, 'execstream: exec: "no-such-command": executable file not found in $PATH\n'),
        (["/etc/passwd"], 126, 'execstream: exec: "/etc/passwd": Permission denied\n'),
        (["/tmp"], 126, 'execstream: exec: "/tmp": is a directory\n'),
    ]
    for command, code, message in cases:
        result = client(execstream_bin, server, verb, "demo", "--", *command)
        assert (result.returncode, result.stderr.decode(), result.stdout) == (code, message, b""), command


def test_exec_sync_json_names_a_command_that_cannot_start(execstream_bin, server):
    import json

    result = client(execstream_bin, server, "exec-sync", "--json", "demo", "--", "/no/such/binary")
    assert result.returncode == 127
    assert json.loads(result.stdout) == {"error": {"code": "unknown", "message": 'exec: "/no/such/binary": No such file or directory'}}


def test_exec_without_a_server_is_one_clear_error(execstream_bin, tmp_path):
    result = subprocess.run(
        [execstream_bin, "exec", "--server", f"unix://{tmp_path}/none.sock", "demo", "--", "true"], capture_output=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.decode().startswith("execstream: cannot connect to unix://")


def test_exec_sync_json_is_one_structured_result(execstream_bin, server):
    import json

    result = client(execstream_bin, server, "exec-sync", "--json", "demo", "--", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert result.returncode == 4
    assert json.loads(result.stdout) == {"exitCode": 4, "stdout": "out\n", "stderr": "err\n", "stdoutDroppedBytes": 0, "stderrDroppedBytes": 0}


def test_exec_sync_timeout_is_a_clear_error(execstream_bin, server):
    import json

    result = client(execstream_bin, server, "exec-sync", "--json", "--timeout", "1", "demo", "--", "sleep", "30")
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "deadline_exceeded"


def test_exec_tty_reports_the_terminal(execstream_bin, server):
    result = client(execstream_bin, server, "exec", "-t", "demo", "--", "sh", "-c", "test -t 0 && test -t 1 && echo tty")
    assert result.stdout == b"tty\r\n"
    assert result.returncode == 0


def test_attach_reaches_the_main_process_and_leaving_keeps_it(execstream_bin, server):
    address = f"unix://{server.unix_socket}"
    attach = subprocess.Popen([execstream_bin, "attach", "-i", "--server", address, "demo"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    attach.stdin.write(b"echo cli-attach-$((2*21))\n")
    attach.stdin.flush()
    assert attach.stdout.readline() == b"cli-attach-42\n"
    attach.kill()
    attach.wait()
    assert client(execstream_bin, server, "exec", "demo", "--", "true").returncode == 0


def test_serve_with_a_config_file(execstream_bin, tmp_path):
    from conftest import start_server, stop_server

    config = tmp_path / "execstream.yaml"
    config.write_text(
        "sessions: {postExitDrainSeconds: 1}\n"
        "containers:\n"
        "  - id: web\n"
        "    labels: {app: web}\n"
        "    env: [GREETING=from-config]\n"
        "    main: {command: [sh, -c, 'echo web-started; cat']}\n"
    )
    running = start_server(execstream_bin, str(tmp_path / "s.sock"), "--config", str(config))
    try:
        result = client(execstream_bin, running, "exec", "web", "--", "sh", "-c", "echo $GREETING")
        assert result.stdout == b"from-config\n"
        attach = subprocess.Popen(
            [execstream_bin, "attach", "--server", f"unix://{running.unix_socket}", "web"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert attach.stdout.readline() == b"web-started\n"
        attach.kill()
        attach.wait()
        assert client(execstream_bin, running, "exec", "demo", "--", "true").returncode == 0
    finally:
        assert stop_server(running) == 0


def test_a_bad_config_file_is_one_clear_line(execstream_bin, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("containers: [{id: web, isolaton: host}]\n")
    result = subprocess.run([execstream_bin, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == f'execstream: {config}: unknown key "isolaton" in containers[]\n'


def test_graceful_shutdown_ends_attach_sessions_with_the_main_process(execstream_bin, tmp_path):
    from conftest import start_server, stop_server

    running = start_server(execstream_bin, str(tmp_path / "s.sock"))
    attach = subprocess.Popen(
        [execstream_bin, "attach", "-i", "--server", f"unix://{running.unix_socket}", "demo"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    attach.stdin.write(b"echo attached\n")
    attach.stdin.flush()
    assert attach.stdout.readline() == b"attached\n"
    # SIGTERM: the main process is asked to stop, so the attach ends with it (status Success)
    # instead of holding the drain open until the grace period.
    assert stop_server(running, timeout=20) == 0
    assert attach.wait(timeout=20) == 0


def test_connection_errors_are_in_a_persons_words(execstream_bin, tmp_path):
    """No library type names: the system's reason, and what to check."""
    with socket_on_a_closed_port() as port:
        result = subprocess.run([execstream_bin, "exec", "--server", f"127.0.0.1:{port}", "demo", "--", "true"], capture_output=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.decode() == f"execstream: cannot connect to 127.0.0.1:{port}: connection refused (is execstream serve running?)\n"
    result = subprocess.run(
        [execstream_bin, "exec-sync", "--server", f"unix://{tmp_path}/none.sock", "demo", "--", "true"], capture_output=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.decode() == f"execstream: cannot connect to unix://{tmp_path}/none.sock: no such socket (is execstream serve running?)\n"


def test_json_errors_carry_the_grpc_meaning(execstream_bin, server):
    import json

    result = client(execstream_bin, server, "exec-sync", "--json", "no-such-container", "--", "true")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"error": {"code": "not_found", "message": 'container "no-such-container" not found'}}


def test_version_flag(execstream_bin):
    result = subprocess.run([execstream_bin, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip().count(".") == 2


@contextlib.contextmanager
def socket_on_a_closed_port():
    """A loopback port nothing listens on: bound (so nobody else takes it) but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_attach_to_a_server_that_was_never_up_fails_at_once(execstream_bin, tmp_path):
    """Reconnecting is for a connection that worked and dropped, not for a wrong address."""
    result = subprocess.run(
        [execstream_bin, "attach", "--server", f"unix://{tmp_path}/none.sock", "demo"], capture_output=True, timeout=10
    )
    assert result.returncode == 1
    assert result.stderr.decode() == f"execstream: cannot connect to unix://{tmp_path}/none.sock: no such socket (is execstream serve running?)\n"


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def http_get(address: str, port: int, path: str) -> bytes:
    with socket.create_connection((address, port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return response


def test_port_forward_listens_on_both_loopbacks_and_forwards_every_connection(execstream_bin, server, http_server):
    import re
    import signal

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    forward = subprocess.Popen(
        [execstream_bin, "port-forward", "--server", f"unix://{server.unix_socket}", "demo", f":{http_server}", f"0:{closed_port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        addresses = ["127.0.0.1", "::1"] if ipv6_loopback() else ["127.0.0.1"]
        listening = {}
        for remote in (http_server, closed_port):
            for address in addresses:
                line = forward.stdout.readline()
                shown = f"[{address}]" if ":" in address else address
                match = re.fullmatch(rf"Forwarding from {re.escape(shown)}:(\d+) -> {remote}\n", line)
                assert match, line or f"port-forward ended: {forward.stderr.read()}"
                listening.setdefault(remote, set()).add(int(match[1]))
        assert all(len(ports) == 1 for ports in listening.values()), "the same free port on both addresses"
        local = listening[http_server].pop()
        for address in addresses:
            for index in range(3):
                response = http_get(address, local, f"/via-cli-{index}")
                assert response.startswith(b"HTTP/1.0 200 OK") and response.endswith(f"hello from /via-cli-{index}".encode())
                assert forward.stdout.readline() == f"Handling connection for {local}\n"
        # A port nobody listens on: the connection ends, the error is one line, the command goes on.
        refused = listening[closed_port].pop()
        assert http_get("127.0.0.1", refused, "/") == b""
        assert forward.stdout.readline() == f"Handling connection for {refused}\n"
        assert http_get("127.0.0.1", local, "/still-there").endswith(b"hello from /still-there")
    finally:
        forward.send_signal(signal.SIGINT)
        stdout, stderr = forward.communicate(timeout=30)
    assert forward.returncode == 0
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"execstream: an error occurred forwarding {refused} -> {closed_port}: "), stderr
    assert f"port {closed_port}" in lines[0]


@pytest.mark.parametrize("port", ["0", "abc", "1:2:3", "70000", "x:80"])
def test_port_forward_refuses_a_bad_port_argument(execstream_bin, port):
    result = run(execstream_bin, "port-forward", "demo", port)
    assert result.returncode == 64
    assert f'invalid port "{port}": expected [LOCAL:]REMOTE with ports 1-65535' in result.stderr
