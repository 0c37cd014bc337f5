"""Newest attach wins, over every transport: a second attach to a container takes its streams,
the first is told it was preempted (a Conflict status), and the second carries on with stdin."""
import grpc
import pytest

from conftest import start_server, stop_server
from test_conformance import TRANSPORTS, Session


@pytest.fixture(scope="module")
def attach_server(execstream_bin, tmp_path_factory):
    directory = tmp_path_factory.mktemp("preemption")
    config = directory / "execstream.yaml"
    loop = "while read line; do echo got $line; done"
    config.write_text(
        "containers:\n"
        + "".join(f"  - {{id: shared-{t}, main: {{command: [sh, -c, '{loop}'], stdin: true, stdinOnce: true}}}}\n" for t in TRANSPORTS)
    )
    running = start_server(execstream_bin, str(directory / "s.sock"), "--config", str(config))
    yield running
    assert stop_server(running) == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_newest_attach_wins_and_the_older_is_told(attach_server, cri, transport):
    api, stubs = cri
    container = f"shared-{transport}"
    with grpc.insecure_channel(attach_server.control) as channel:
        service = stubs.RuntimeServiceStub(channel)

        def attach():
            url = service.Attach(api.AttachRequest(container_id=container, stdin=True, stdout=True, stderr=True), timeout=10).url
            return Session(transport, url, stdin=True, tty=False, stderr=True)

        older = attach()
        # "Newest" is decided by the order the server attaches in: prove the older one is live.
        older.write(b"one\n")
        older.wait_for_stdout(b"got one\n")
        newer = attach()
        _, _, status = older.finish()
        assert status["status"] == "Failure"
        assert status["reason"] == "Conflict" and status["code"] == 409
        assert "preempted" in status["message"] and container in status["message"]
        # The older attach let go of stdin without closing it (stdin_once is the newer's now).
        newer.write(b"two\n")
        newer.close_stdin()
        stdout, stderr, status = newer.finish()
        assert stdout == b"got two\n"
        assert status == {"metadata": {}, "status": "Success"}
