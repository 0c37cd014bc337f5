"""The execstream.v1 container API driven as a sandbox runtime would, with grpcio: containers
declared while the server runs, their IO through containerd's Stream attached before Start,
stop/remove semantics, the reattach storm, and leak checks after many sessions."""
import collections
import hashlib
import os
import random
import urllib.request

import grpc
import pytest

from conftest import start_server, stop_server
from container_runtime import expected_output


@pytest.fixture(scope="module")
def sidecar(execstream_bin, tmp_path_factory):
    directory = tmp_path_factory.mktemp("containers")
    running = start_server(execstream_bin, str(directory / "s.sock"), "--enable-benchmark-routes")
    yield running
    assert stop_server(running) == 0


def test_lifecycle_with_streams_attached_before_start(api, cri, sidecar):
    # It waits for stdin's EOF before it exits, so it is RUNNING when Start answers.
    container = api.create("life", ["sh", "-c", "echo out; echo err >&2; cat >/dev/null; exit 3"], stdin=True, labels={"app": "demo"})
    assert container.state == api.messages.CONTAINER_STATE_CREATED
    assert "life" in api.ids()
    # CRI sees it too, as CREATED.
    cri_api, cri_stubs = cri
    with grpc.insecure_channel(f"unix:{sidecar.unix_socket}") as channel:
        status = cri_stubs.RuntimeServiceStub(channel).ContainerStatus(cri_api.ContainerStatusRequest(container_id="life"), timeout=10).status
    assert status.state == cri_api.CONTAINER_CREATED
    stdout, stderr = api.stream("life-stdout"), api.stream("life-stderr")
    started = api.start("life")
    assert started.state == api.messages.CONTAINER_STATE_RUNNING and started.started_at > 0
    stdin = api.stream("life-stdin")
    stdin.close_send()
    stdin.finish()
    assert b"".join(stdout.read_all()) == b"out\n"
    assert b"".join(stderr.read_all()) == b"err\n"
    exited = api.wait("life")
    assert (exited.state, exited.exit_code, exited.reason) == (api.messages.CONTAINER_STATE_EXITED, 3, "Error")
    assert exited.finished_at >= exited.started_at > 0
    api.remove("life")
    assert "life" not in api.ids()


def test_stop_sends_sigterm_then_sigkill_after_the_grace(api):
    api.create("polite", ["sleep", "1000"])
    api.start("polite")
    stopped = api.stop("polite", timeout_seconds=30)
    assert (stopped.exit_code, stopped.reason) == (128 + 15, "Stopped")
    # A main process that ignores SIGTERM is killed once the grace period is over.
    api.create("stubborn", ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"])
    stdout = api.stream("stubborn-stdout")
    api.start("stubborn")
    stdout.grant(1 << 16)
    assert stdout.read() == b"ready\n"  # the trap is set: SIGTERM alone cannot stop it
    stopped = api.stop("stubborn", timeout_seconds=1)
    assert (stopped.exit_code, stopped.reason) == (128 + 9, "Stopped")
    for container_id in ("polite", "stubborn"):
        api.remove(container_id)


def test_mistakes_get_clear_statuses(api):
    def code_of(call):
        with pytest.raises(grpc.RpcError) as error:
            call()
        return error.value.code()

    api.create("once", ["true"])
    assert code_of(lambda: api.create("once", ["true"])) == grpc.StatusCode.ALREADY_EXISTS
    assert code_of(lambda: api.create("bad id", ["true"])) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: api.create("", ["true"])) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: api.create("nocommand", [])) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: api.start("nobody")) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: api.wait("nobody")) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: api.remove("nobody")) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: api.stop("once", timeout_seconds=-1)) == grpc.StatusCode.INVALID_ARGUMENT
    api.start("once")
    assert code_of(lambda: api.start("once")) == grpc.StatusCode.FAILED_PRECONDITION
    api.wait("once")
    api.remove("once")


def test_a_container_removed_mid_stream_gives_eof_after_the_last_byte(api, tmp_path):
    # The process says through a FIFO when it has written everything; the consumer has read only
    # 64 KiB of it by then, the rest waits in the channel and the pipe.
    fifo = tmp_path / "written"
    os.mkfifo(fifo)
    api.create("removed", ["sh", "-c", f"seq 1 100000; echo > {fifo}; exec sleep 1000"])
    stdout = api.stream("removed-stdout")
    api.start("removed")
    stdout.grant(1 << 16)
    received = [stdout.read()]
    while stdout.received < stdout.granted:
        received.append(stdout.read())
    with open(fifo) as written:
        assert written.readline() == "\n"
    api.remove("removed", timeout_seconds=0)  # SIGKILL at once; the output already written drains
    received += list(stdout.read_all())
    assert stdout.call.code() == grpc.StatusCode.OK
    assert b"".join(received) == expected_output("seq 1 100000")
    assert "removed" not in api.ids()


def test_stdin_beyond_the_granted_credit_is_refused(api):
    api.create("greedy", ["cat"], stdin=True)
    api.start("greedy")
    stdin = api.stream("greedy-stdin")
    credit = stdin.take_credit()
    stdin.send_message(stdin.transfer.Data(data=b"x" * (credit + 1)))
    with pytest.raises(grpc.RpcError) as error:
        stdin.take_credit()
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    api.remove("greedy")


def test_stdin_credit_stops_while_the_process_does_not_read_and_resumes(api, tmp_path):
    # The process reads nothing until the test says so through a FIFO: the channel fills to its
    # high watermark (1 MiB), the server stops granting credit, and the writer waits. Released,
    # every byte arrives, in order.
    import threading

    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    api.create("slowreader", ["sh", "-c", f"read go < {fifo}; exec sha256sum"], stdin=True)
    stdout = api.stream("slowreader-stdout")
    stdin = api.stream("slowreader-stdin")
    api.start("slowreader")
    payload = os.urandom(4 << 20)
    past_the_watermark = threading.Event()

    def write():
        for offset in range(0, len(payload), 32 << 10):
            stdin.write(payload[offset : offset + (32 << 10)])
            if offset >= (1 << 20) + (128 << 10):
                past_the_watermark.set()
        stdin.close_send()
        stdin.finish()

    writer = threading.Thread(target=write)
    writer.start()
    assert past_the_watermark.wait(timeout=60)
    with open(fifo, "w") as go:
        go.write("go\n")
    writer.join(timeout=60)
    assert not writer.is_alive()
    assert b"".join(stdout.read_all()) == f"{hashlib.sha256(payload).hexdigest()}  -\n".encode()
    api.remove("slowreader")


def test_a_newer_stream_preempts_and_gets_what_the_older_did_not(api):
    api.create("handover", ["sh", "-c", "seq 1 50000"])
    old = api.stream("handover-stdout")
    api.start("handover")
    old.grant(1000)
    first = old.read()
    new = api.stream("handover-stdout")  # acked: the old stream has lost the channel
    with pytest.raises(grpc.RpcError) as error:
        while (data := old.read()) is not None:
            first += data
    assert error.value.code() == grpc.StatusCode.ABORTED
    assert "preempted" in error.value.details()
    rest = b"".join(new.read_all())
    assert first + rest == expected_output("seq 1 50000")
    api.remove("handover")


def test_reattach_storm_loses_and_repeats_nothing(api):
    """1,000 disconnects and reattaches of three kinds during a 256 MiB stream: a newer stream
    preempting the current one (which reads on to its ABORTED end), CloseSend (the current one
    reads on to its OK end), and a cancel with no credit outstanding. What every consumer received,
    in order, must equal what the process wrote."""
    size = 256 << 20
    command = f"seq 1 40000000 | head -c {size}"
    api.create("storm", ["sh", "-c", command])
    rng = random.Random(20261123)
    # An event about every 240 KiB, so the thousand land while the bytes flow.
    event_every = size // 1100
    received = hashlib.sha256()
    kinds = {"preempt": 0, "close_send": 0, "cancel": 0}
    total = 0

    def take(stream) -> bool:
        """Reads one Data message into what was received; False at the end of the stream."""
        nonlocal total
        data = stream.read()
        if data is None:
            return False
        received.update(data)
        total += len(data)
        return True

    def drain_to_end(stream):
        try:
            while take(stream):
                pass
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.ABORTED, error
        stream.granted = stream.received  # nothing more will come

    current = api.stream("storm-stdout")
    api.start("storm")
    next_event = event_every
    ended = False
    while not ended:
        # Read with containerd's pattern until the next event is due.
        if current.granted - current.received < (64 << 10):
            current.grant(128 << 10)
        if not take(current):
            ended = True
            break
        if total < next_event or sum(kinds.values()) >= 1000:
            continue
        next_event += rng.randint(event_every // 2, 3 * event_every // 2)
        kind = rng.choice(list(kinds))
        kinds[kind] += 1
        if kind == "preempt":
            newer = api.stream("storm-stdout")
            drain_to_end(current)
            current = newer
        elif kind == "close_send":
            current.close_send()
            drain_to_end(current)
            current = api.stream("storm-stdout")
        else:
            # Read exactly what was granted, then cancel: nothing can be in flight.
            while current.received < current.granted:
                if not take(current):
                    ended = True
                    break
            current.cancel()
            if not ended:
                current = api.stream("storm-stdout")
    events = sum(kinds.values())
    print(f"storm: {events} events {kinds}, {total} bytes")
    assert events == 1000
    assert total == size
    assert received.hexdigest() == hashlib.sha256(expected_output(command)).hexdigest()
    api.remove("storm")


def test_a_thousand_sessions_leave_no_fds_tasks_or_channels(api, sidecar):
    def fds():
        """Open fds by kind (pipe, pidfd, eventfd, …), and the number of sockets apart: a
        connection an earlier test's client is closing may still be open at the baseline."""
        directory = f"/proc/{sidecar.process.pid}/fd"
        links = [os.readlink(f"{directory}/{fd}") for fd in os.listdir(directory)]
        kinds = collections.Counter(link.split("[")[0] if "[" in link else link for link in links if not link.startswith("socket:"))
        return kinds, sum(link.startswith("socket:") for link in links)

    def tasks():
        return len(os.listdir(f"/proc/{sidecar.process.pid}/task"))

    def channels():
        with urllib.request.urlopen(f"{sidecar.url}/debug/registry", timeout=10) as response:
            return int(response.read().decode().split(":")[1].rstrip("}\n"))

    # Warm up once (threads and pools the server keeps for its life), then take the baseline.
    api.create("warm", ["true"])
    api.start("warm")
    api.remove("warm")
    baseline = (fds(), tasks(), channels())
    for index in range(1000):
        container_id = f"leak-{index}"
        api.create(container_id, ["sh", "-c", "echo hi; cat"], stdin=True)
        stdout, stderr, stdin = (api.stream(f"{container_id}-{name}") for name in ("stdout", "stderr", "stdin"))
        api.start(container_id)
        stdout.grant(1 << 16)
        assert stdout.read() == b"hi\n"
        if index % 3 == 0:
            # Aborted: every stream vanishes mid-session; the runtime comes back (as containerd
            # does after a restart), removes the container and collects the rest: EOF.
            for stream in (stdout, stderr, stdin):
                stream.cancel()
            api.remove(container_id)
            assert b"".join(api.stream(f"{container_id}-stdout").read_all()) == b""
            assert b"".join(api.stream(f"{container_id}-stderr").read_all()) == b""
        elif index % 3 == 1:
            # Preempted, then ended by EOF on stdin.
            newer = api.stream(f"{container_id}-stdout")
            stdin.take_credit()
            stdin.close_send()
            stdin.finish()
            assert b"".join(newer.read_all()) == b""
            assert b"".join(stderr.read_all()) == b""
            api.wait(container_id)
            api.remove(container_id)
        else:
            # Removed while running, with every stream still open: each ends with OK.
            api.remove(container_id)
            assert b"".join(stdout.read_all()) == b""
            assert b"".join(stderr.read_all()) == b""
            stdin.finish()
    (kinds, sockets), threads, live = fds(), tasks(), channels()
    assert (kinds, live) == (baseline[0][0], baseline[2])
    assert sockets <= baseline[0][1]
    # The Swift runtime's pools (the cooperative pool, dispatch's workers) start and retire a few
    # threads on their own, either way; a thread held per session would be hundreds here.
    assert threads <= baseline[1] + 4
