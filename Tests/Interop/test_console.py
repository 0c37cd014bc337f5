"""`execstream console` as a co-process driver: a Python script writes one JSON step per line to
its stdin and reads one JSON answer per step from its stdout, as any test language can. The
console is a container's main process, an interactive shell on a terminal (attached), or a shell
the driver starts by exec on a terminal (`--exec`)."""
import hashlib
import json
import os
import select
import subprocess

import pytest

from conftest import start_server, stop_server


@pytest.fixture(scope="module")
def console_server(execstream_bin, tmp_path_factory):
    directory = tmp_path_factory.mktemp("console")
    config = directory / "execstream.yaml"
    config.write_text(
        "containers:\n"
        + "".join(
            f"  - {{id: {name}, env: ['PATH=/usr/bin:/bin', 'PS1=$ '], main: {{command: [{shell}, -i], tty: true, stdin: true}}}}\n"
            for name, shell in [("dash", "sh"), ("bash", "bash"), ("typing", "sh"), ("cut", "sh"), ("prompted", "sh")]
        )
        # Consoles started by exec run in this one.
        + "  - {id: host, env: ['PATH=/usr/bin:/bin', 'PS1=$ '], main: {command: [sleep, infinity]}}\n"
    )
    running = start_server(execstream_bin, str(directory / "s.sock"), "--config", str(config))
    yield running
    assert stop_server(running) == 0


class Driver:
    """The co-process: one step in, one answer out."""

    def __init__(self, execstream_bin, server, container, address=None, flags=(), command=()):
        self.process = subprocess.Popen(
            [execstream_bin, "console", "--server", address or f"unix://{server.unix_socket}", *flags, container]
            + (["--", *command] if command else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )

    def step(self, **step) -> dict:
        self.process.stdin.write(json.dumps(step) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, self.process.stderr.read()
        return json.loads(line)

    def close(self) -> int:
        self.process.stdin.close()
        return self.process.wait(timeout=60)


# A console: attached to a container's shell, or a shell started by exec.
CONSOLES = {
    "dash": {"container": "dash"},
    "bash": {"container": "bash"},
    "exec-sh": {"container": "host", "flags": ("--exec",), "command": ("sh", "-i")},
    "exec-bash": {"container": "host", "flags": ("--exec",), "command": ("bash", "-i")},
}


@pytest.mark.parametrize("console", list(CONSOLES))
def test_run_returns_each_commands_output_and_status_exactly(execstream_bin, console_server, console):
    driver = Driver(execstream_bin, console_server, **CONSOLES[console])
    cases = [
        ("echo hello; echo world", "hello\r\nworld\r\n", 0),
        ("printf 'no final newline'", "no final newline", 0),
        ("printf 'ESB_%s\\nESE_%s:0\\n' fake fake", "ESB_fake\r\nESE_fake:0\r\n", 0),
        ("printf '$ \\n$ '", "$ \r\n$ ", 0),
        ("sh -c 'exit 42'", "", 42),
        ("seq 1 20000 | tail -n 1", "20000\r\n", 0),
    ]
    for command, output, status in cases:
        assert driver.step(run=command, timeout=30) == {"ok": True, "output": output, "exitCode": status}, command
    assert driver.close() == 0


def test_expect_takes_up_to_the_match_and_keeps_the_rest(execstream_bin, console_server):
    driver = Driver(execstream_bin, console_server, "dash")
    assert driver.step(run="true")["ok"]
    # A command that reads a line of stdin: type it, then the line it reads.
    assert driver.step(send="read line; echo \"got [$line]\"\n") == {"ok": True}
    assert driver.step(send="typed\n") == {"ok": True}
    answer = driver.step(expect=r"got \[(\w+)\]", regex=True, timeout=30)
    assert answer["ok"] and answer["match"] == "got [typed]"
    # Nothing is matched twice: the same text again is not there.
    failed = driver.step(expect="got [typed]", timeout=0.5)
    assert failed["ok"] is False and failed["error"]["code"] == "timeout"
    assert "did not come within" in failed["error"]["message"] and failed["error"]["tail"].endswith("$ ")
    assert driver.step(expect="(unclosed", regex=True)["error"]["code"] == "invalid_pattern"
    assert driver.step(bogus=1)["error"]["code"] == "invalid_step"
    assert driver.close() == 0


@pytest.mark.parametrize("console", ["typing", "exec-sh"])
def test_64_kib_typed_into_a_terminal_arrive_whole(execstream_bin, console_server, tmp_path, console):
    """Typing waits for the terminal to take each chunk, so a canonical line's 4 KiB is never
    overrun: 1,024 lines of 64 bytes, to the byte."""
    data = "".join(f"{index:05d} " + "x" * 57 + "\n" for index in range(1024))
    assert len(data) == 65536
    target = tmp_path / "typed"
    driver = Driver(execstream_bin, console_server, **CONSOLES.get(console, {"container": console}))
    assert driver.step(run="stty -echo")["ok"]
    assert driver.step(send=f"head -c 65536 > {target}; echo stored-$((20+22))\n") == {"ok": True}
    assert driver.step(send=data) == {"ok": True}
    assert driver.step(expect="stored-42", timeout=60)["ok"]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data.encode()).hexdigest()
    assert driver.close() == 0


def test_a_script_file_stops_at_the_first_failure(execstream_bin, console_server, tmp_path):
    script = tmp_path / "steps.jsonl"
    script.write_text('{"run": "echo one"}\n{"expect": "never", "timeout": 0.2}\n{"run": "echo three"}\n')
    result = subprocess.run(
        [execstream_bin, "console", "--server", f"unix://{console_server.unix_socket}", "--script", str(script), "bash"],
        capture_output=True, text=True, timeout=60,
    )
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1
    assert answers[0] == {"ok": True, "output": "one\r\n", "exitCode": 0}
    assert answers[1]["ok"] is False and len(answers) == 2


def test_leaving_a_console_leaves_its_shell_running(execstream_bin, console_server):
    for _ in range(3):
        driver = Driver(execstream_bin, console_server, "bash")
        assert driver.step(run="echo still here") == {"ok": True, "output": "still here\r\n", "exitCode": 0}
        assert driver.close() == 0


def test_a_script_through_connections_cut_mid_frame_loses_and_repeats_no_step(execstream_bin, console_server, tmp_path):
    """Connections cut by bytes forwarded (never by time), mid-frame: the resumable attach takes
    up again, and every step's answer is exact; each command ran exactly once."""
    from console_workload import workload
    from cutting_proxy import CuttingProxy

    log = tmp_path / "ran"
    proxy = CuttingProxy(console_server.unix_socket, cuts=6, seed=15, min_bytes=32 << 10, max_bytes=512 << 10)
    driver = Driver(execstream_bin, console_server, "cut", address=proxy.address)
    try:
        for index, (step, (output, status)) in enumerate(workload(0, count=120)):
            step = dict(step, run=f"echo {index} >> {log}; " + step["run"])
            assert driver.step(timeout=120, **step) == {"ok": True, "output": output, "exitCode": status}, step["run"]
        assert driver.close() == 0
    finally:
        proxy.close()
    assert proxy.cuts >= 3, "the connection was cut, more than once"
    assert log.read_text().split() == [str(index) for index in range(120)]


def test_prompt_fencing_takes_the_prompt_after_each_run(execstream_bin, console_server):
    driver = Driver(execstream_bin, console_server, "prompted", flags=("--prompt", r"\$ "))
    assert driver.step(run="printf 'a\\n$ not a prompt: mid-line $ '") == {"ok": True, "output": "a\r\n$ not a prompt: mid-line $ ", "exitCode": 0}
    # The prompt after the command is taken: nothing is left to match.
    assert driver.step(expect="$ ", timeout=0.3)["error"]["code"] == "timeout"
    assert driver.step(run="echo next") == {"ok": True, "output": "next\r\n", "exitCode": 0}
    assert driver.close() == 0


def test_an_invalid_prompt_is_one_clear_error(execstream_bin, console_server):
    result = subprocess.run(
        [execstream_bin, "console", "--server", f"unix://{console_server.unix_socket}", "--prompt", "(", "bash"],
        capture_output=True, text=True, timeout=60, input="",
    )
    assert result.returncode == 1
    assert result.stderr.startswith("execstream: invalid prompt: invalid regular expression /(?m)^(?:()/")


def test_an_exec_console_ends_its_shell_when_the_steps_end(execstream_bin, console_server):
    driver = Driver(execstream_bin, console_server, **CONSOLES["exec-sh"])
    answer = driver.step(run="echo $$")
    assert answer["ok"] and answer["exitCode"] == 0
    shell = int(answer["output"])
    pidfd = os.pidfd_open(shell)
    try:
        assert driver.close() == 0
        # The shell's pidfd becomes readable when it exits: wait for that, not for a time.
        assert select.select([pidfd], [], [], 30)[0] == [pidfd], "the exec'd shell outlived its console"
    finally:
        os.close(pidfd)


def test_an_exec_console_reports_a_shell_that_cannot_start(execstream_bin, console_server):
    driver = Driver(execstream_bin, console_server, "host", flags=("--exec",), command=("/no/such/shell",))
    answer = driver.step(run="true")
    assert answer["ok"] is False and answer["error"]["code"] == "ended"
    assert "/no/such/shell" in answer["error"]["message"] and "No such file" in answer["error"]["message"]
    assert driver.close() == 0


def test_a_command_without_exec_is_a_usage_error(execstream_bin, console_server):
    result = subprocess.run(
        [execstream_bin, "console", "--server", f"unix://{console_server.unix_socket}", "host", "--", "sh"],
        capture_output=True, text=True, timeout=60, input="",
    )
    assert result.returncode == 64 and "a command is started only with --exec" in result.stderr


def test_steps_that_are_not_steps_get_a_clear_answer_and_the_console_goes_on(execstream_bin, console_server):
    driver = Driver(execstream_bin, console_server, **CONSOLES["exec-sh"])
    bad = [
        ({"expect": "x", "timeout": 1e300}, '"timeout" must be a number of seconds from 0 to 1000000'),
        ({"expect": "x", "timeout": -1}, '"timeout" must be a number'),
        ({"expect": "x", "timeout": "30"}, '"timeout" must be a number'),
        ({"expect": "x", "timeout": True}, '"timeout" must be a number'),
        ({"expect": "x", "regex": 1}, '"regex" must be true or false'),
        ({"send": "a", "run": "b"}, 'exactly one of "send", "expect" or "run"'),
        ({}, 'exactly one of "send", "expect" or "run"'),
        ({"send": 5}, '"send" must be a string'),
        ({"run": "true", "input": ["x"]}, '"input" must be a string'),
        ({"run": "true", "imput": "x"}, 'a "run" step has no "imput"'),
    ]
    for step, message in bad:
        answer = driver.step(**step)
        assert answer["ok"] is False and answer["error"]["code"] == "invalid_step" and message in answer["error"]["message"], step
    for line in (b"[1]", b'"run"', b"not json", b'{"run": "\xff\xfe"'):
        driver.process.stdin.flush()
        driver.process.stdin.buffer.write(line + b"\n")
        driver.process.stdin.buffer.flush()
        answer = json.loads(driver.process.stdout.readline())
        assert answer["error"]["code"] == "invalid_step" and "one JSON object per line" in answer["error"]["message"]
    assert driver.step(run="echo still fine", timeout=30) == {"ok": True, "output": "still fine\r\n", "exitCode": 0}
    assert driver.close() == 0


def test_send_times_out_when_the_terminal_takes_nothing_more(execstream_bin, console_server):
    """The foreground process does not read: the terminal's buffers and the stdin channel fill,
    the stdin window stops, and send answers `timeout` with how much was taken, never hangs."""
    driver = Driver(execstream_bin, console_server, **CONSOLES["exec-sh"])
    assert driver.step(send="sleep 600\n") == {"ok": True}
    answer = driver.step(send=("x" * 63 + "\n") * (1 << 15), timeout=2)
    assert answer["ok"] is False and answer["error"]["code"] == "timeout", answer
    assert "did not take what was typed within 2.0 seconds" in answer["error"]["message"]
    assert "of 2097152 bytes taken" in answer["error"]["message"]
    assert driver.close() == 0
