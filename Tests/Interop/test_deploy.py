"""deploy/ is checked with the tools an operator would use: `systemd-analyze verify` for the unit,
kubernetes-validate (strict, Kubernetes 1.30) for the manifests, and `execstream serve
--check-config` for the example configuration and every configuration the manifests embed. The
systemd readiness protocol the unit relies on (Type=notify) is checked against a socket of the
test's own, as systemd would listen."""
import os
import pathlib
import signal
import socket
import subprocess
import tempfile

import pytest
import yaml

from conftest import start_server, stop_server

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.30.0"


def check_config(execstream_bin: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([execstream_bin, "serve", "--config", path, "--check-config"], capture_output=True, text=True, timeout=60)


def test_the_systemd_unit_verifies_without_a_warning(execstream_bin, tmp_path):
    # verify checks that ExecStart's binary exists: point the unit at the built one, nothing else changes.
    unit = (DEPLOY / "execstream.service").read_text().replace("/usr/local/bin/execstream", execstream_bin)
    path = tmp_path / "execstream.service"
    path.write_text(unit)
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", "systemd-analyze warned:\n" + result.stdout + result.stderr


def test_the_kubernetes_manifests_validate_strictly():
    validator = pathlib.Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "kubernetes-validate"
    if not validator.exists():
        validator = ROOT / ".venv" / "bin" / "kubernetes-validate"
    manifests = sorted(str(path) for path in (DEPLOY / "kubernetes").glob("*.yaml"))
    assert manifests
    result = subprocess.run(
        [str(validator), "--strict", "-k", KUBERNETES_VERSION, *manifests], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr


def embedded_configs():
    """Every `config.yaml` a ConfigMap in deploy/kubernetes carries."""
    for manifest in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(manifest.read_text()):
            if document and document.get("kind") == "ConfigMap" and "config.yaml" in document.get("data", {}):
                yield manifest.name, document["data"]["config.yaml"]


def test_the_example_config_and_every_embedded_one_pass_check_config(execstream_bin, tmp_path):
    result = check_config(execstream_bin, str(DEPLOY / "config.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "configuration ok\n"
    found = list(embedded_configs())
    assert len(found) == 2
    for name, text in found:
        path = tmp_path / f"{name}.config.yaml"
        path.write_text(text)
        result = check_config(execstream_bin, str(path))
        assert result.returncode == 0, f"{name}: {result.stderr}"


@pytest.mark.parametrize(
    "text, message",
    [
        ("listen: [\"127.0.0.1:10350\"]\nlogLevels: info\n", 'unknown key "logLevels"'),
        ("sessions: {maxConcurrentSessions: 0}\n", "sessions.maxConcurrentSessions must be positive"),
        ("http2: {maxHeaderListSize: 10}\n", "the HTTP/2 maximum header list size must be between 1024"),
        ("controlListen: [\"127.0.0.1:10351\"]\n", "needs TLS with client certificates"),
        ("tls: {certFile: /nonexistent/tls.crt, keyFile: /nonexistent/tls.key}\n", "cannot load the TLS certificate /nonexistent/tls.crt"),
        ("containers: [{id: a}, {id: a}]\n", 'container "a" already exists'),
    ],
)
def test_check_config_refuses_what_serve_would_refuse(execstream_bin, tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    result = check_config(execstream_bin, str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("execstream: ") and message in result.stderr, result.stderr


def test_the_server_speaks_systemds_readiness_protocol(execstream_bin, tmp_path):
    # systemd's side: a datagram socket named by NOTIFY_SOCKET.
    directory = tempfile.mkdtemp(prefix="notify-", dir="/tmp")  # short: sun_path holds 108 bytes
    notify_path = os.path.join(directory, "notify")
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(notify_path)
    systemd.settimeout(60)
    server = None
    try:
        server = start_server(execstream_bin, str(tmp_path / "s.sock"), env={"NOTIFY_SOCKET": notify_path})
        ready = systemd.recv(4096).decode().split("\n")
        assert ready[0] == "READY=1"
        assert ready[1].startswith("STATUS=serving on ") and f"127.0.0.1:{server.port}" in ready[1]
        server.process.send_signal(signal.SIGTERM)
        stopping = systemd.recv(4096).decode().split("\n")
        assert stopping == ["STOPPING=1", "STATUS=draining connections"]
        assert stop_server(server) == 0
    finally:
        if server is not None and server.is_running():
            server.process.kill()  # a failed assertion must not leave the server behind
        systemd.close()
        os.unlink(notify_path)
        os.rmdir(directory)
