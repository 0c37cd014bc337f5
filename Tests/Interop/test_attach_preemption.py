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
        + "  - {id: ticker, main: {command: [sh, -c, 'while true; do echo tick; sleep 0.05; done'], stdin: false}}\n"
        + "  - {id: flood, main: {command: [yes], stdin: false}}\n"
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


def test_preemptions_and_resumable_attaches_are_in_the_metrics(attach_server, cri):
    from native_client import NativeStream
    from test_metrics import scrape, value, wait_for

    api, stubs = cri
    with grpc.insecure_channel(attach_server.control) as channel:
        service = stubs.RuntimeServiceStub(channel)
        urls = [service.Attach(api.AttachRequest(container_id="ticker", stdout=True), timeout=10).url for _ in range(2)]
    before = scrape(attach_server)
    older = Session("native", urls[0], stdin=False, tty=False, stderr=False)
    older.wait_for_stdout(b"tick\n")
    newer = NativeStream(urls[1], headers=[("execstream-resumable", "1")])
    _, _, status = older.finish()
    assert status["reason"] == "Conflict"
    while newer.result is None:
        newer.pump_once()
    newer.conn.reset_stream(newer.stream_id, error_code=0x8)
    newer.flush()
    resumable = {"kind": "attach", "transport": "native-resumable"}
    after = wait_for(attach_server, lambda samples: value(samples, "execstream_sessions_ended_total", outcome="client_gone", **resumable) == 1)
    newer.sock.close()

    def grew(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("execstream_iochannel_preemptions_total", side="consumer") == 1
    assert grew("execstream_iochannel_preemptions_total", side="producer") == 0
    assert grew("execstream_sessions_ended_total", kind="attach", transport="native", outcome="preempted") == 1
    assert grew("execstream_sessions_started_total", **resumable) == 1
    # Nobody attaches to `flood`: its stdout channel fills to the high watermark (1 MiB), and
    # its producer is told to pause.
    flooded = wait_for(attach_server, lambda samples: value(samples, "execstream_iochannel_paused_producers") >= 1)
    assert value(flooded, "execstream_iochannel_buffered_bytes") >= 1 << 20
