#!/usr/bin/env python3
"""`make bench`: 1 GiB over HTTP/2, ExecStream beside nghttpd, in one run.

ExecStream streams the bytes from memory on its benchmark-only route (enabled by a flag the
production configuration never sets); nghttpd serves a 1 GiB file. Both are driven by the same
h2load command with 1 MiB stream windows (what ExecStream advertises and its client asks for).
Printed: MB/s and server CPU-seconds per GiB for each, and the ratios. Figures, not assertions.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

GIB = 1 << 30
ROUNDS = 9
H2LOAD = ["h2load", "-n", "1", "-c", "1", "-m", "1", "-w", "20", "-W", "24"]
# Each server on core 0, the client on core 1 (when there are two cores): same for both servers,
# and far less noise than letting the scheduler move them around.
PIN_SERVER = ["taskset", "-c", "0"] if os.cpu_count() and os.cpu_count() >= 2 and shutil.which("taskset") else []
PIN_CLIENT = ["taskset", "-c", "1"] if PIN_SERVER else []


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_accepting(port: int, process: subprocess.Popen) -> None:
    for _ in range(500):
        if process.poll() is not None:
            sys.exit(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)  # a benchmark harness polling a peer's startup, not a test
    sys.exit(f"nothing accepted on port {port}")


def transfer(url: str, pid: int) -> tuple[float, float]:
    """One 1 GiB transfer: (MB/s, server CPU-seconds)."""
    before = cpu_seconds(pid)
    start = time.monotonic()
    result = subprocess.run(PIN_CLIENT + H2LOAD + [url], capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(pid) - before
    if "1 succeeded" not in result.stdout:
        sys.exit(f"h2load failed against {url}:\n{result.stdout}{result.stderr}")
    finished = re.search(r"finished in ([\d.]+)(ms|s)", result.stdout)
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1) if finished else elapsed
    return GIB / seconds / 1e6, cpu


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main() -> None:
    for tool in ("h2load", "nghttpd"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: make bench installs nghttp2-client and nghttp2-server")
    execstream = os.path.join(
        subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], capture_output=True, text=True, check=True).stdout.strip(),
        "execstream",
    )
    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, "1g.bin"), "wb") as file:
            file.truncate(GIB)

        ours = subprocess.Popen(
            PIN_SERVER + [execstream, "serve", "--listen", "127.0.0.1:0", "--no-cri-socket", "--enable-benchmark-routes", "--log-level", "warning"],
            stdout=subprocess.PIPE, text=True,
        )
        line = ours.stdout.readline()  # "listening on http://127.0.0.1:PORT (data plane)"
        our_port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))

        nghttpd_port = free_port()
        theirs = subprocess.Popen(
            PIN_SERVER + ["nghttpd", "--no-tls", "-d", directory, "-w", "20", "-W", "24", str(nghttpd_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until_accepting(nghttpd_port, theirs)
        try:
            # Interleaved rounds, so drift in the machine's speed hits both servers alike.
            our_runs, their_runs = [], []
            for _ in range(ROUNDS):
                our_runs.append(transfer(f"http://127.0.0.1:{our_port}/debug/bytes?size={GIB}", ours.pid))
                their_runs.append(transfer(f"http://127.0.0.1:{nghttpd_port}/1g.bin", theirs.pid))
            our_rate, our_cpu = median([r for r, _ in our_runs]), median([c for _, c in our_runs])
            their_rate, their_cpu = median([r for r, _ in their_runs]), median([c for _, c in their_runs])
        finally:
            ours.terminate()
            theirs.terminate()
            ours.wait(timeout=60)
            theirs.wait(timeout=60)

    pinning = " (server on core 0, client on core 1)" if PIN_SERVER else ""
    print(f"HTTP/2 1 GiB download, {' '.join(H2LOAD)}, median of {ROUNDS} interleaved rounds{pinning}")
    print(f"  {'server':<34}{'MB/s':>10}{'CPU-s/GiB':>12}")
    print(f"  {'execstream (memory, NO_COPY)':<34}{our_rate:>10.0f}{our_cpu:>12.3f}")
    print(f"  {'nghttpd (1 GiB file)':<34}{their_rate:>10.0f}{their_cpu:>12.3f}")
    print(f"  throughput ratio execstream/nghttpd: {our_rate / their_rate:.2f}x   CPU ratio: {our_cpu / their_cpu:.2f}x")


if __name__ == "__main__":
    main()
