"""The flake test, inverted: 8 consoles in parallel (four attached to a container's shell, four
shells started by exec), 500 commands each (short and multi-megabyte
outputs, no final newline, marker-like and prompt-like text, non-zero exits, a command reading a
line of stdin), while every core is kept busy, in three rounds: every output byte-exact, every
exit status right, no failure. The driver waits for events, never for time."""
import concurrent.futures
import time

import pytest

from conftest import start_server, stop_server
from console_workload import CPULoad, console_containers, workload
from test_console import Driver

SESSIONS = 8


@pytest.fixture(scope="module")
def stress_server(execstream_bin, tmp_path_factory):
    directory = tmp_path_factory.mktemp("console-stress")
    config = directory / "execstream.yaml"
    config.write_text("containers:\n" + console_containers(SESSIONS))
    running = start_server(execstream_bin, str(directory / "s.sock"), "--config", str(config))
    yield running
    assert stop_server(running) == 0


def drive(execstream_bin, server, session: int) -> tuple[int, int, list]:
    """One console through the whole workload: (commands, output bytes, failures). Odd sessions
    start their shell by exec; even ones attach to the container's."""
    started_by_exec = {"flags": ("--exec",), "command": ("sh", "-i")} if session % 2 else {}
    driver = Driver(execstream_bin, server, f"console-{session}", **started_by_exec)
    failures, commands, size = [], 0, 0
    try:
        for step, (output, status) in workload(session):
            answer = driver.step(timeout=120, **step)
            commands += 1
            size += len(answer.get("output", ""))
            if answer != {"ok": True, "output": output, "exitCode": status}:
                failures.append((step, {key: (value[:200] if isinstance(value, str) else value) for key, value in answer.items()}))
    finally:
        assert driver.close() == 0
    return commands, size, failures


def test_eight_consoles_under_load_get_every_output_and_status_exactly(execstream_bin, stress_server):
    for round_number in range(1, 4):
        started = time.monotonic()
        with CPULoad(), concurrent.futures.ThreadPoolExecutor(SESSIONS) as pool:
            results = list(pool.map(lambda session: drive(execstream_bin, stress_server, session), range(SESSIONS)))
        elapsed = time.monotonic() - started
        commands = sum(result[0] for result in results)
        size = sum(result[1] for result in results)
        failures = [failure for result in results for failure in result[2]]
        print(f"round {round_number}: {commands} commands, {size} output bytes, {elapsed:.1f} s, {len(failures)} failures")
        assert commands == SESSIONS * 500
        assert failures == [], failures[:5]
