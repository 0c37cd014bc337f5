"""Exec over ExecStream's native HTTP/2 format, driven by Python grpcio (the CRI Exec call) and
Python h2 (the stream): every byte, the exit code, stdin, terminals, and tokens."""
import hashlib
import json
import os
import select
import signal
import subprocess

import pytest

import native_client
from native_client import NativeStream, frame, run




def test_echo_gives_exact_bytes_and_exit_code_zero(runtime):
    result = run(runtime, "demo", ["echo", "hi"])
    assert result.status == 200
    assert result.stdout == b"hi\n"
    assert result.stderr == b""
    assert result.exit_code == 0
    assert result.status_json == {"metadata": {}, "status": "Success"}
    assert json.loads(result.trailers["execstream-status"]) == result.status_json


def test_order_is_output_then_close_frames_then_status(runtime):
    result = run(runtime, "demo", ["sh", "-c", "echo out; echo err >&2"])
    assert result.stdout == b"out\n" and result.stderr == b"err\n"
    closes = [index for index, item in enumerate(result.order) if isinstance(item, tuple)]
    status = result.order.index(native_client.STATUS)
    assert sorted(item[1] for item in result.order if isinstance(item, tuple)) == [1, 2]
    assert all(index < status for index in closes)
    assert status == len(result.order) - 1


@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_codes(runtime, code):
    result = run(runtime, "demo", ["sh", "-c", f"exit {code}"])
    assert result.exit_code == code
    if code:
        assert result.status_json["status"] == "Failure"
        assert result.status_json["reason"] == "NonZeroExitCode"
        assert result.status_json["details"]["causes"] == [{"reason": "ExitCode", "message": str(code)}]


def test_death_by_signal_is_128_plus_n(runtime):
    assert run(runtime, "demo", ["sh", "-c", "kill -TERM $$"]).exit_code == 128 + 15


def test_stdin_round_trip_with_eof(runtime):
    data = bytes(range(256)) * 1000
    result = run(runtime, "demo", ["cat"], input=data)
    assert result.stdout == data
    assert result.exit_code == 0


def test_empty_stdin_is_eof_not_a_hang(runtime):
    result = run(runtime, "demo", ["wc", "-c"], input=b"")
    assert result.stdout.strip() == b"0"


def test_tty_with_initial_size(runtime):
    # The initial size rides on the request head, so it is set before the process starts.
    result = run(runtime, "demo", ["stty", "size"], tty=True, size=(123, 45))
    assert result.stdout == b"45 123\r\n"
    assert result.exit_code == 0
    assert native_client.STDERR not in result.order


def test_tty_resize_reaches_the_process(runtime):
    url = native_client.exec_url(runtime, "demo", ["sh", "-c", "stty size; read line; stty size"], tty=True, stdin=True, stderr=False)
    stream = NativeStream(url, terminal_size=(80, 24))
    stream.wait_for_stdout(b"24 80\r\n")
    stream.send(frame(native_client.RESIZE, b'{"Width":100,"Height":50}'))
    stream.send(frame(native_client.STDIN, b"go\n"), end=True)
    result = stream.wait()
    stream.close()
    assert result.stdout.endswith(b"50 100\r\n")
    assert result.exit_code == 0


def test_missing_command_is_an_internal_error_status(runtime):
    result = run(runtime, "demo", ["/no/such/command"])
    assert result.status == 200
    assert result.status_json["status"] == "Failure"
    assert result.status_json["reason"] == "InternalError"
    assert result.status_json["details"]["causes"] == [
        {"reason": "ExitCode", "message": "127"},
        {"message": 'exec: "/no/such/command": No such file or directory'},
    ]
    assert "execstream-exit-code" not in result.trailers


def test_a_background_child_holding_stdout_does_not_hang_the_client(runtime, tmp_path):
    # `sleep` keeps stdout open after the shell exits; the post-exit drain bounds the wait.
    marker = tmp_path / "pid"
    result = run(runtime, "demo", ["sh", "-c", f"echo started; sleep 600 & echo $! > {marker}; exit 7"])
    os.kill(int(marker.read_text()), signal.SIGKILL)
    assert result.stdout == b"started\n"
    assert result.exit_code == 7


def test_one_mebibyte_of_output_is_byte_exact(runtime):
    result = run(runtime, "demo", ["head", "-c", str(8 << 20), "/dev/urandom"])
    assert len(result.stdout) == 8 << 20
    assert result.exit_code == 0


def test_large_stdin_and_stdout_together_are_byte_exact(runtime):
    data = bytes(range(251)) * 40000
    result = run(runtime, "demo", ["cat"], input=data)
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_token_is_single_use(runtime):
    url = native_client.exec_url(runtime, "demo", ["true"])
    first = NativeStream(url)
    first.send(b"", end=True)
    assert first.wait().exit_code == 0
    first.close()
    second = NativeStream(url)
    second.send(b"", end=True)
    result = second.wait()
    second.close()
    assert result.status == 404
    assert result.body == b"404 page not found\n"


def test_unknown_and_wrong_kind_tokens_are_404(runtime, server):
    for path in ["/exec/AAAAAAAAAAAAAAAAAAAAAA", "/attach/nope", "/exec/"]:
        stream = NativeStream(server.url + path)
        stream.send(b"", end=True)
        assert stream.wait().status == 404, path
        stream.close()
    # An exec token offered to /attach is unknown there, and is not burnt.
    url = native_client.exec_url(runtime, "demo", ["echo", "still-good"])
    stream = NativeStream(url.replace("/exec/", "/attach/"))
    stream.send(b"", end=True)
    assert stream.wait().status == 404
    stream.close()
    stream = NativeStream(url)
    stream.send(b"", end=True)
    assert stream.wait().stdout == b"still-good\n"
    stream.close()


def test_wrong_content_type_is_415_and_keeps_the_token(runtime):
    url = native_client.exec_url(runtime, "demo", ["echo", "ok"])
    stream = NativeStream(url, content_type="text/plain")
    stream.send(b"", end=True)
    assert stream.wait().status == 415
    stream.close()
    stream = NativeStream(url)
    stream.send(b"", end=True)
    assert stream.wait().stdout == b"ok\n"
    stream.close()


def test_client_reset_kills_the_process_group(runtime, tmp_path):
    marker = tmp_path / "pid"
    url = native_client.exec_url(runtime, "demo", ["sh", "-c", f"sleep 600 & echo $! > {marker}; echo ready; wait"])
    stream = NativeStream(url)
    stream.send(b"", end=True)
    stream.wait_for_stdout(b"ready\n")
    pid = int(marker.read_text())
    stream.reset()
    stream.close()
    # The server kills the group and reaps its leader; the orphaned `sleep` is reaped by init.
    # A pidfd is readable once the process has exited: wait for that event, not for time.
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        assert poller.poll(10_000), "the exec's background child survived its client"
    finally:
        os.close(pidfd)


def test_malformed_frame_resets_only_that_stream(runtime):
    url = native_client.exec_url(runtime, "demo", ["cat"], stdin=True)
    stream = NativeStream(url)
    stream.send(frame(9, b"x"), end=True)
    result = stream.wait()
    stream.close()
    assert result.reset_code == 1  # PROTOCOL_ERROR
    assert run(runtime, "demo", ["echo", "fine"]).stdout == b"fine\n"


def test_one_gibibyte_of_stdout_is_byte_exact(runtime):
    # `seq` output is different everywhere, so a lost, repeated or reordered chunk changes the hash.
    size = 1 << 30
    command = ["sh", "-c", f"seq 1 200000000 | head -c {size}"]
    expected = hashlib.sha256()
    with subprocess.Popen(command, stdout=subprocess.PIPE) as local:
        while chunk := local.stdout.read(1 << 20):
            expected.update(chunk)
    url = native_client.exec_url(runtime, "demo", command)
    stream = NativeStream(url)
    stream.send(b"", end=True)
    received = hashlib.sha256()
    stream.on_stdout = received.update
    result = stream.wait()
    stream.close()
    assert result.exit_code == 0
    assert stream.stdout_bytes == size
    assert received.hexdigest() == expected.hexdigest()


def test_get_with_a_valid_token_is_405_and_keeps_the_token(runtime):
    url = native_client.exec_url(runtime, "demo", ["echo", "kept"])
    stream = NativeStream(url, method="GET")
    stream.send(b"", end=True)
    assert stream.wait().status == 405
    stream.close()
    stream = NativeStream(url)
    stream.send(b"", end=True)
    assert stream.wait().stdout == b"kept\n"
    stream.close()


def test_attach_to_the_demo_shell_with_stdin(runtime):
    api, service = runtime
    url = service.Attach(api.AttachRequest(container_id="demo", stdin=True, stdout=True, stderr=True), timeout=10).url
    assert "/attach/" in url
    stream = NativeStream(url)
    stream.send(frame(native_client.STDIN, b"echo py-attach-$((6*7))\n"))
    stream.wait_for_stdout(b"py-attach-42\n")
    stream.reset()
    stream.close()
    # Leaving did not stop the shell: the next attach reaches it.
    url = service.Attach(api.AttachRequest(container_id="demo", stdin=True, stdout=True), timeout=10).url
    stream = NativeStream(url)
    stream.send(frame(native_client.STDIN, b"echo still-here\n"))
    stream.wait_for_stdout(b"still-here\n")
    stream.reset()
    stream.close()


CREDIT = [("execstream-stdin-credit", "1")]


def wait_for_window(stream: NativeStream, taken: int):
    """Pumps until a stdin window says the process's stdin channel took `taken` bytes."""
    while stream.result is None or not any(window[0] >= taken for window in stream.result.stdin_windows):
        assert not stream.done, f"the stream ended before stdin reached {taken}: {stream.result}"
        stream.pump_once()


def test_stdin_credit_on_an_exec_says_what_the_process_took(runtime):
    """`execstream-stdin-credit: 1` (what a console started by exec uses): the first window comes
    before any output, `taken` follows what the stdin channel took, and `limit` moves on with it."""
    data = bytes(range(256)) * 1200  # 300 KiB: more than the first window
    stream = NativeStream(native_client.exec_url(runtime, "demo", ["sh", "-c", "echo started; sha256sum"], stdin=True), headers=CREDIT)
    wait_for_window(stream, 0)
    assert stream.result.headers.get("execstream-stdin-credit") == "1"
    assert stream.result.order[0] == native_client.STDIN_WINDOW, "the window comes before any output"
    taken, limit = stream.result.stdin_windows[0]
    assert taken == 0 and limit == 256 << 10
    stream.send(frame(native_client.STDIN, data[:limit]))
    wait_for_window(stream, limit)
    newest = stream.result.stdin_windows[-1]
    assert newest[0] == limit and newest[1] > limit, "credit comes back as the channel takes bytes"
    stream.send(frame(native_client.STDIN, data[limit:]))
    wait_for_window(stream, len(data))
    stream.send(b"", end=True)
    result = stream.wait()
    stream.close()
    assert result.exit_code == 0
    assert result.stdout == b"started\n" + hashlib.sha256(data).hexdigest().encode() + b"  -\n"


def test_stdin_credit_mistakes_are_refused(runtime):
    # Stdin beyond the window resets the stream with FLOW_CONTROL_ERROR.
    stream = NativeStream(native_client.exec_url(runtime, "demo", ["cat"], stdin=True), headers=CREDIT)
    wait_for_window(stream, 0)
    taken, limit = stream.result.stdin_windows[0]
    stream.send(frame(native_client.STDIN, b"x" * (limit - taken + 1)))
    assert stream.wait().reset_code == 3
    stream.close()

    # Acknowledgements belong to a resumable attach only.
    stream = NativeStream(native_client.exec_url(runtime, "demo", ["cat"], stdin=True), headers=CREDIT)
    wait_for_window(stream, 0)
    stream.send(frame(native_client.ACKNOWLEDGE, bytes(9)))
    assert stream.wait().reset_code == 1  # PROTOCOL_ERROR
    stream.close()

    # A frame only the server sends, and a frame header that lies about its length: both reset
    # the stream (PROTOCOL_ERROR), and the process goes with it.
    for bad in (frame(native_client.STATUS, b"{}"), b"\x00\xff\xff\xff\xff" + b"x" * 64):
        stream = NativeStream(native_client.exec_url(runtime, "demo", ["cat"], stdin=True), headers=CREDIT)
        wait_for_window(stream, 0)
        stream.send(bad, end=True)
        assert stream.wait().reset_code == 1, bad[:8]
        stream.close()

    # Without stdin there is no window; the command runs as ever.
    stream = NativeStream(native_client.exec_url(runtime, "demo", ["echo", "no stdin"]), headers=CREDIT)
    stream.send(b"", end=True)
    result = stream.wait()
    stream.close()
    assert result.stdin_windows == []
    assert result.stdout == b"no stdin\n" and result.exit_code == 0

    # A bad flag is 400 before the token is spent.
    url = native_client.exec_url(runtime, "demo", ["echo", "kept"])
    stream = NativeStream(url, headers=[("execstream-stdin-credit", "yes")])
    result = stream.wait()
    stream.close()
    assert result.status == 400 and b"execstream-stdin-credit must be 1" in result.body
    stream = NativeStream(url)
    stream.send(b"", end=True)
    assert stream.wait().stdout == b"kept\n"
    stream.close()
