"""The console workload of issue 15's stress test, shared by the test and by the naive-driver
measurement (Benchmarks/console_naive.py): per session, commands with short outputs,
multi-megabyte outputs, output without a final newline, marker-like and prompt-like text,
non-zero exits and a command that reads a line of stdin, each with the exact answer expected."""
import os
import subprocess

BIG = 2_000_000


def workload(session: int, count: int = 500):
    """(run step, expected answer) pairs."""
    for index in range(count):
        kind = index % 7
        if kind == 0:
            yield {"run": f"echo short-{session}-{index}"}, (f"short-{session}-{index}\r\n", 0)
        elif kind == 1:
            yield {"run": f"printf 'no-newline-%d' {index}"}, (f"no-newline-{index}", 0)
        elif kind == 2:
            yield {"run": f"printf 'ESB_%s\\nESE_%s:0\\n' {index} {index}"}, (f"ESB_{index}\r\nESE_{index}:0\r\n", 0)
        elif kind == 3:
            yield {"run": f"sh -c 'exit {index % 255 + 1}'"}, ("", index % 255 + 1)
        elif kind == 4:
            # The terminal echoes the typed line, then the command prints.
            yield {"run": "read v; echo got-$v", "input": f"value-{index}\n"}, (f"value-{index}\r\ngot-value-{index}\r\n", 0)
        elif kind == 5:
            yield {"run": "printf '$ \\n$ $ '"}, ("$ \r\n$ $ ", 0)
        elif index % 49 == 6:
            yield {"run": f"head -c {BIG} /dev/zero | tr '\\0' a"}, ("a" * BIG, 0)
        else:
            yield {"run": "seq 1 3; false"}, ("1\r\n2\r\n3\r\n", 1)


class CPULoad:
    """Keeps every core busy (a busy shell loop per core) while it is open."""

    def __enter__(self):
        self.processes = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(os.cpu_count() or 1)]
        return self

    def __exit__(self, *_):
        for process in self.processes:
            process.kill()
            process.wait()


def console_containers(count: int) -> str:
    """Config lines for `count` console containers, console-0 …: an interactive sh on a terminal."""
    return "".join(
        f"  - {{id: console-{n}, env: ['PATH=/usr/bin:/bin', 'PS1=$ '], main: {{command: [sh, -i], tty: true, stdin: true}}}}\n" for n in range(count)
    )
