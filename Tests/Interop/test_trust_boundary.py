"""The trust boundary, tried as an unprivileged local user would (a system user this test run
creates, through `setpriv`): on the plain TCP port every control method is refused and runs
nothing; the 0600 unix socket lets the user in only with the configured group; the data plane
works for whoever holds a URL. Only native peers run as that user (nghttp, curl, our CLI): the Python
environment lives under /root, which the user cannot read."""
import fcntl
import grp
import json
import os
import pwd
import subprocess
import tempfile

import grpc
import pytest

from conftest import start_server, stop_server
from containerd_client import pack

PROBE = "execstream-probe"
CONTROL_CALLS = [
    "/runtime.v1.RuntimeService/Version",
    "/runtime.v1.RuntimeService/ExecSync",
    "/runtime.v1.RuntimeService/Exec",
    "/runtime.v1.RuntimeService/Attach",
    "/runtime.v1.RuntimeService/PortForward",
    "/runtime.v1.RuntimeService/ListContainers",
    "/runtime.v1.RuntimeService/ContainerStatus",
    "/runtime.v1.ImageService/ImageFsInfo",
    "/execstream.v1.Containers/Create",
    "/execstream.v1.Containers/Start",
    "/execstream.v1.Containers/Stop",
    "/execstream.v1.Containers/Remove",
    "/execstream.v1.Containers/List",
    "/execstream.v1.Containers/Wait",
    "/containerd.services.streaming.v1.Streaming/Stream",
]


@pytest.fixture(scope="session")
def probe():
    """(uid, gid) of a system user without privileges, created once (workers take turns)."""
    with open("/tmp/execstream-probe-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(PROBE)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", PROBE],
                check=True, capture_output=True,
            )
    entry = pwd.getpwnam(PROBE)
    assert entry.pw_uid != 0 and entry.pw_gid != 0
    return entry.pw_uid, entry.pw_gid


def as_probe(probe, *command: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    uid, gid = probe
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *command],
        capture_output=True, input=input, timeout=60, cwd="/",
    )


@pytest.fixture
def open_directory():
    """A directory the probe user can reach (pytest's own are private to root)."""
    directory = tempfile.mkdtemp(prefix="execstream-boundary-")
    os.chmod(directory, 0o755)
    yield directory
    subprocess.run(["rm", "-rf", directory], check=True)


def grpc_request_file(directory: str, name: str, message: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as file:
        file.write(b"\x00" + len(message).to_bytes(4, "big") + message)
    os.chmod(path, 0o644)
    return path


def test_every_control_method_on_plain_tcp_is_refused_and_runs_nothing(execstream_bin, probe, open_directory, cri, containerd_protos):
    api, _ = cri
    streaming, _, _, containers, _ = containerd_protos
    marker = os.path.join(open_directory, "pwned")
    # Requests that would each leave the marker behind, had they run.
    messages = {
        "/runtime.v1.RuntimeService/ExecSync": api.ExecSyncRequest(container_id="demo", cmd=["touch", marker]),
        "/runtime.v1.RuntimeService/Exec": api.ExecRequest(container_id="demo", cmd=["touch", marker], stdout=True),
        "/execstream.v1.Containers/Create": containers.CreateContainerRequest(
            spec=containers.ContainerSpec(id="evil", main=containers.MainProcess(command=["touch", marker]))
        ),
        "/execstream.v1.Containers/Start": containers.StartContainerRequest(id="evil"),
        "/containerd.services.streaming.v1.Streaming/Stream": pack(streaming.StreamInit(id="demo-stdin")),
    }
    server = start_server(execstream_bin, os.path.join(open_directory, "s.sock"))
    try:
        for index, path in enumerate(CONTROL_CALLS):
            message = messages.get(path)
            body = grpc_request_file(open_directory, f"request-{index}", message.SerializeToString() if message else b"")
            # nghttp, not curl: curl 7.88 cannot take an answer that arrives before its upload
            # ends (it waits, or fails on the RST_STREAM NO_ERROR that follows the answer).
            result = as_probe(
                probe, "nghttp", "-v", "-H", "content-type: application/grpc", "-H", "te: trailers",
                "-d", body, f"http://127.0.0.1:{server.port}{path}",
            )
            response = result.stdout.decode()
            assert result.returncode == 0, result.stderr
            assert "grpc-status: 7\n" in response, f"{path}: {response}"
            assert "is a control-plane call" in response and f"127.0.0.1:{server.port} (plain TCP)" in response
        assert not os.path.exists(marker), "a refused call ran"
        with grpc.insecure_channel(server.control) as channel:
            names = [c.spec.id for c in containers_stub(channel, containerd_protos).List(containers.ListContainersRequest(), timeout=10).containers]
        assert "evil" not in names
    finally:
        assert stop_server(server) == 0


def containers_stub(channel, containerd_protos):
    return containerd_protos[4].ContainersStub(channel)


def test_the_private_socket_refuses_another_user_and_the_cli_says_why_on_tcp(execstream_bin, probe, open_directory):
    socket_path = os.path.join(open_directory, "s.sock")
    server = start_server(execstream_bin, socket_path)
    try:
        assert oct(os.stat(socket_path).st_mode & 0o777) == "0o600"
        refused = as_probe(probe, execstream_bin, "exec", "--server", f"unix://{socket_path}", "demo", "--", "true")
        assert refused.returncode == 1
        assert b"Permission denied" in refused.stderr or b"permission denied" in refused.stderr.lower(), refused.stderr
        # Over TCP a non-root user connects (TCP_NODELAY, not SO_DEBUG) and learns why it may not.
        tcp = as_probe(probe, execstream_bin, "exec", "--server", f"127.0.0.1:{server.port}", "demo", "--", "true")
        assert tcp.returncode == 1
        assert b"is a control-plane call" in tcp.stderr, tcp.stderr
        assert b"setsockopt" not in tcp.stderr
    finally:
        assert stop_server(server) == 0


def test_with_the_socket_group_the_user_runs_commands_and_is_named_in_the_logs(execstream_bin, probe, open_directory):
    uid, gid = probe
    socket_path = os.path.join(open_directory, "s.sock")
    server = start_server(execstream_bin, socket_path, "--socket-group", PROBE, "--log-level", "debug")
    try:
        status = os.stat(socket_path)
        assert (oct(status.st_mode & 0o777), status.st_gid) == ("0o660", grp.getgrnam(PROBE).gr_gid)
        assert f"listening on unix://{socket_path} (control and data planes, mode 0660, group {PROBE})\n" in server.output
        result = as_probe(probe, execstream_bin, "exec", "--server", f"unix://{socket_path}", "demo", "--", "sh", "-c", "echo $((6*7))")
        assert (result.stdout, result.returncode) == (b"42\n", 0), result.stderr
        synced = as_probe(probe, execstream_bin, "exec-sync", "--json", "--server", f"unix://{socket_path}", "demo", "--", "echo", "sync")
        assert json.loads(synced.stdout)["stdout"] == "sync\n"
        seen = []
        while not any(f"peer=unix uid={uid} gid={gid} pid=" in line and "ExecSync" in line for line in seen):
            line = server.lines.get(timeout=30)
            assert line is not None, "the server exited"
            seen.append(line)
    finally:
        assert stop_server(server) == 0


def test_the_plain_tcp_data_plane_serves_a_token_holder(execstream_bin, probe, open_directory, cri):
    """Whoever holds a one-time URL may use it, as on containerd's streaming port."""
    api, stubs = cri
    server = start_server(execstream_bin, os.path.join(open_directory, "s.sock"))
    try:
        with grpc.insecure_channel(server.control) as channel:
            request = api.ExecRequest(container_id="demo", cmd=["echo", "token holder"], stdout=True)
            url = stubs.RuntimeServiceStub(channel).Exec(request, timeout=10).url
        body = os.path.join(open_directory, "empty")
        open(body, "wb").close()
        os.chmod(body, 0o644)
        result = as_probe(
            probe, "curl", "-sS", "--http2-prior-knowledge", "-H", "content-type: application/vnd.execstream.v1", "--data-binary", f"@{body}", url
        )
        payload = b"token holder\n"
        assert bytes([1]) + len(payload).to_bytes(4, "big") + payload in result.stdout, result.stderr
    finally:
        assert stop_server(server) == 0


def test_missing_socket_directories_are_created(execstream_bin, open_directory):
    socket_path = os.path.join(open_directory, "run", "execstream", "nested", "s.sock")
    server = start_server(execstream_bin, socket_path)
    try:
        for directory in ("run", "run/execstream", "run/execstream/nested"):
            assert oct(os.stat(os.path.join(open_directory, directory)).st_mode & 0o777) == "0o755"
        assert os.path.exists(socket_path)
    finally:
        assert stop_server(server) == 0


def test_containers_start_only_after_every_listener_is_bound(execstream_bin, tmp_path):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    marker = tmp_path / "started"
    config = tmp_path / "execstream.yaml"
    config.write_text(f"containers:\n  - {{id: early, main: {{command: [touch, {marker}], stdin: false}}}}\n")
    result = subprocess.run(
        [execstream_bin, "serve", "--config", str(config), "--listen", f"127.0.0.1:{taken.getsockname()[1]}",
         "--cri-socket", str(tmp_path / "s.sock")],
        capture_output=True, text=True, timeout=60,
    )
    taken.close()
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1:" in result.stderr
    assert not marker.exists(), "a main process ran although the server could not start"
