#!/usr/bin/env python3
"""Before and after, from one run on one machine: the figures issue notes ask for, for two release
builds side by side (say, a worktree at the commit before a change, and this tree):

    git worktree add /tmp/before BASE && (cd /tmp/before && swift build -c release \\
        --product execstream && swift build -c release --product ExecLatency \\
        && swift build -c release --product StreamThroughput)
    swift build -c release ... (the same three here)
    .venv/bin/python Benchmarks/compare_builds.py /tmp/before/.build/release .build/release [LOG_LEVEL]

Each build gets a server of its own; measurements alternate between them, so both see the same
machine, and both are measured with the same clients (the after build's ExecLatency and
StreamThroughput), so only the server differs. Exec `true` p50/p99 (ExecLatency, 1,000 runs,
3 rounds: median of each), 1 GiB of stdout over native HTTP/2, WebSocket v5 over HTTP/1.1 and over
HTTP/2 (RFC 8441) and SPDY (StreamThroughput, median of 3), and server RSS per idle exec session
(idle_sessions.py). Figures, not assertions."""
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import threading

HERE = pathlib.Path(__file__).resolve().parent
GIB = 1 << 30


def start_server(binary: str, log_level: str) -> tuple[subprocess.Popen, str]:
    directory = tempfile.mkdtemp(prefix="execstream-compare-")
    process = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--cri-socket", f"{directory}/s.sock", "--log-level", log_level],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for line in process.stdout:
        if line.startswith("listening on unix://"):
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process, f"unix://{directory}/s.sock"
    sys.exit(f"{binary} did not start")


def latency(bin_dir: str, address: str) -> tuple[float, float]:
    text = subprocess.run([os.path.join(bin_dir, "ExecLatency"), "--server", address, "--runs", "1000"], check=True, capture_output=True, text=True).stdout
    p50 = float(re.search(r"p50\s+([\d.]+)", text).group(1))
    p99 = float(re.search(r"p99\s+([\d.]+)", text).group(1))
    return p50, p99


def throughput(bin_dir: str, address: str, transport: str) -> float:
    line = subprocess.run(
        [os.path.join(bin_dir, "StreamThroughput"), "--server", address, "--transport", transport, "--bytes", str(GIB)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return float(line[3])


def idle(bin_dir: str) -> str:
    return subprocess.run(
        [sys.executable, str(HERE / "idle_sessions.py"), "--bin", os.path.join(bin_dir, "execstream")], check=True, capture_output=True, text=True
    ).stdout


def main() -> None:
    builds = {"before": sys.argv[1], "after": sys.argv[2]}
    # An optional third argument: the servers' log level (default warning; `info` writes the
    # audit log, one line per call and per session, as a production server does).
    log_level = sys.argv[3] if len(sys.argv) > 3 else "warning"
    servers = {name: start_server(os.path.join(path, "execstream"), log_level) for name, path in builds.items()}
    clients = builds["after"]
    transports = ("native", "websocket", "websocket-h2", "spdy")
    figures = {name: {"p50": [], "p99": [], **{transport: [] for transport in transports}} for name in builds}
    try:
        for _ in range(3):
            for name in builds:
                p50, p99 = latency(clients, servers[name][1])
                figures[name]["p50"].append(p50)
                figures[name]["p99"].append(p99)
            for transport in transports:
                for name in builds:
                    figures[name][transport].append(throughput(clients, servers[name][1], transport))
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=60)
    print(f"{'':<28}{'before':>12}{'after':>12}{'after/before':>14}")
    for key, label, unit in (("p50", "exec true p50", "ms"), ("p99", "exec true p99", "ms"), ("native", "1 GiB native HTTP/2", "MB/s"),
                             ("websocket", "1 GiB WebSocket v5", "MB/s"), ("websocket-h2", "1 GiB WebSocket/HTTP2", "MB/s"),
                             ("spdy", "1 GiB SPDY/3.1", "MB/s")):
        before, after = statistics.median(figures["before"][key]), statistics.median(figures["after"][key])
        print(f"{label + ' (' + unit + ')':<28}{before:>12.3f}{after:>12.3f}{after / before:>13.2f}x")
    for name, path in builds.items():
        print(f"{name}: " + idle(path).strip())


if __name__ == "__main__":
    main()
