#!/usr/bin/env python3
"""The naive way to drive a console, measured (issue 15): the stress test's workload (8 consoles
in parallel, 500 commands each, every core busy), but each command typed and then the next prompt
("$ ") awaited, the output taken as what lies between the echo's line and that prompt. This is
what suites without fences do. Prints the failure rate by kind of command, and beside it the same
workload through fenced `run` steps (four consoles attached, four started by exec): commands,
bytes, seconds and failures. Nothing is asserted.

    EXECSTREAM_BIN=.build/release/execstream .venv/bin/python Benchmarks/console_naive.py
"""
import collections
import concurrent.futures
import os
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "Tests" / "Interop"))
from conftest import start_server, stop_server  # noqa: E402
from console_workload import CPULoad, console_containers, workload  # noqa: E402
from test_console import Driver  # noqa: E402
from test_console_stress import drive  # noqa: E402

SESSIONS = 8
KINDS = ["short", "no final newline", "fence-like text", "non-zero exit", "reads stdin", "prompt-like text", "2 MB or seq"]


def naive(binary, server, session, skip_prompt_like):
    driver = Driver(binary, server, f"console-{session}")
    failures = collections.Counter()
    assert driver.step(expect="$ ", timeout=30)["ok"]
    for index, (step, (output, _status)) in enumerate(workload(session)):
        if skip_prompt_like and index % 7 == 5:
            continue
        typed = step["run"] + "\n" + step.get("input", "")
        assert driver.step(send=typed)["ok"]
        answer = driver.step(expect="$ ", timeout=30)
        seen = answer.get("before", "")
        # Drop the echo of the typed command line; what remains is taken as the output.
        seen = seen.split("\r\n", 1)[1] if "\r\n" in seen else ""
        if not answer["ok"] or seen != output:
            failures[KINDS[index % 7]] += 1
            if os.environ.get("SHOW") and failures[KINDS[index % 7]] == 1:
                print(repr(typed[:60]), repr(answer)[:300], file=sys.stderr)
    driver.close()
    return failures


def measure(binary, skip_prompt_like):
    directory = pathlib.Path(tempfile.mkdtemp(prefix="console-naive-"))
    (directory / "config.yaml").write_text("containers:\n" + console_containers(SESSIONS))
    server = start_server(binary, str(directory / "s.sock"), "--config", str(directory / "config.yaml"))
    try:
        with CPULoad(), concurrent.futures.ThreadPoolExecutor(SESSIONS) as pool:
            results = list(pool.map(lambda session: naive(binary, server, session, skip_prompt_like), range(SESSIONS)))
    finally:
        stop_server(server)
    total = collections.Counter()
    for result in results:
        total.update(result)
    commands = SESSIONS * (500 - (71 if skip_prompt_like else 0))
    title = "without prompt-like output" if skip_prompt_like else "the whole workload"
    print(f"naive driver, {title}: {sum(total.values())} of {commands} commands wrong ({100 * sum(total.values()) / commands:.1f}%)")
    for kind in KINDS:
        if total[kind]:
            print(f"  {kind:18} {total[kind]:5} wrong")


def fenced(binary):
    """The same workload, fenced: what the driver is for."""
    import time

    directory = pathlib.Path(tempfile.mkdtemp(prefix="console-fenced-"))
    (directory / "config.yaml").write_text("containers:\n" + console_containers(SESSIONS))
    server = start_server(binary, str(directory / "s.sock"), "--config", str(directory / "config.yaml"))
    try:
        started = time.monotonic()
        with CPULoad(), concurrent.futures.ThreadPoolExecutor(SESSIONS) as pool:
            results = list(pool.map(lambda session: drive(binary, server, session), range(SESSIONS)))
        elapsed = time.monotonic() - started
    finally:
        stop_server(server)
    commands = sum(result[0] for result in results)
    size = sum(result[1] for result in results)
    failures = sum(len(result[2]) for result in results)
    print(f"fenced driver, the whole workload: {failures} of {commands} commands wrong, {size} output bytes, "
          f"{elapsed:.1f} s ({commands / elapsed:.0f} commands/s)")


def main():
    binary = os.environ.get("EXECSTREAM_BIN", ".build/release/execstream")
    # Once one output holds the prompt, every later command is read one step off: the cascade.
    measure(binary, skip_prompt_like=False)
    # Without such output, what is left is what the prompt alone cannot tell apart.
    measure(binary, skip_prompt_like=True)
    fenced(binary)


if __name__ == "__main__":
    main()
