#!/usr/bin/env python3
"""`make bench`: the exec path end to end, each figure beside its peer from the same run.

1. exec `true`: Exec RPC → native HTTP/2 stream → status, p50/p99 over 1,000 runs, beside bare
   posix_spawn + waitpid (Benchmarks/ExecLatency, against a release `execstream serve`).
2. 1 GiB of `head -c` stdout through `execstream exec` (native HTTP/2) into /dev/null, beside the
   same `head -c` through a plain pipe into `cat`: MB/s and server CPU-seconds.
3. 1 GiB of stdout over WebSocket v5 (HTTP/1.1) and over SPDY/3.1 beside native HTTP/2, same
   run, each read by a Swift client that only counts bytes (Benchmarks/StreamThroughput).
4. Server RSS while 10 GiB stream to a reader that takes 10 MB/s for the first 20 s (the server
   must hold back the process, not buffer), then reads the rest at full speed.
5. 1 GiB of a main process's stdout through `execstream attach` (resumable: every delivery waits
   for the client's acknowledgement) beside the same bytes through `execstream exec` (native
   HTTP/2, no acknowledgements): the price of losing nothing when the connection drops.
6. TLS beside plain TCP on the data plane: exec `true` latency and 1 GiB of native stdout, each
   against a server with --tls-cert/--tls-key and one without, interleaved in the same run.
Control calls go to the unix socket (the control plane); streams measured over TCP go to the
data-plane listener their URL names. Figures, not assertions.
"""
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

GIB = 1 << 30
BIN = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], check=True, capture_output=True, text=True).stdout.strip()
EXECSTREAM = os.path.join(BIN, "execstream")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_server(*extra: str) -> tuple[subprocess.Popen, str]:
    """A release server with a unix socket of its own; returns it and the socket's address."""
    directory = tempfile.mkdtemp(prefix="execstream-bench-")
    process = subprocess.Popen(
        [EXECSTREAM, "serve", "--listen", "127.0.0.1:0", "--cri-socket", f"{directory}/s.sock", "--log-level", "warning", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("listening on unix://"):
            # Keep draining its output so it never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process, f"unix://{directory}/s.sock"
    sys.exit("the server did not start")


def latency(address: str, *extra: str) -> str:
    return subprocess.run(
        [os.path.join(BIN, "ExecLatency"), "--server", address, "--runs", "1000", *extra], check=True, capture_output=True, text=True
    ).stdout


def throughput(address: str, pid: int) -> None:
    def timed(command: list, shell=False) -> tuple[float, float]:
        before = cpu_seconds(pid)
        start = time.monotonic()
        subprocess.run(command, check=True, shell=shell, stdout=subprocess.DEVNULL)
        return time.monotonic() - start, cpu_seconds(pid) - before

    rounds = []
    for _ in range(3):
        served, server_cpu = timed([EXECSTREAM, "exec", "--server", address, "demo", "--", "head", "-c", str(GIB), "/dev/zero"])
        piped, _ = timed(f"head -c {GIB} /dev/zero | cat", shell=True)
        rounds.append((served, server_cpu, piped))
    served, server_cpu, piped = sorted(rounds)[len(rounds) // 2]
    print(f"1 GiB of head -c stdout (median of {len(rounds)})")
    print(f"  ExecStream exec (native HTTP/2)     {GIB / served / 1e6:8.0f} MB/s   server {server_cpu:5.2f} CPU-s")
    print(f"  head -c | cat (a pipe, no server)   {GIB / piped / 1e6:8.0f} MB/s")
    print(f"  throughput ratio ExecStream/pipe: {piped / served:.2f}×")


def transports(address: str, pid: int) -> None:
    figures = {name: [] for name in ("native", "websocket", "websocket-h2", "spdy")}
    for _ in range(3):
        for name in figures:  # interleaved, so all of them see the same machine
            before = cpu_seconds(pid)
            line = subprocess.run(
                [os.path.join(BIN, "StreamThroughput"), "--server", address, "--transport", name, "--bytes", str(GIB)],
                check=True, capture_output=True, text=True,
            ).stdout.split()
            figures[name].append((float(line[3]), cpu_seconds(pid) - before))
    print("1 GiB of stdout per transport (median of 3 interleaved)")
    native = sorted(figures["native"])[1][0]
    for name, label in (("native", "native HTTP/2"), ("websocket", "WebSocket v5 (HTTP/1.1)"), ("websocket-h2", "WebSocket v5 (HTTP/2)"),
                        ("spdy", "SPDY/3.1")):
        rate, cpu = sorted(figures[name])[1]
        print(f"  {label:<26} {rate:8.0f} MB/s   server {cpu:5.2f} CPU-s   {rate / native:5.2f}x native")


def memory(address: str, pid: int) -> None:
    total = 10 * GIB
    exec_client = subprocess.Popen(
        [EXECSTREAM, "exec", "--server", address, "demo", "--", "head", "-c", str(total), "/dev/zero"], stdout=subprocess.PIPE
    )
    baseline = rss_kib(pid)
    peak = baseline
    received = 0
    slow_until = time.monotonic() + 20
    rate = 10_000_000
    started = time.monotonic()
    while True:
        now = time.monotonic()
        if now < slow_until:
            # 10 MB/s: read 1 MB every 0.1 s of wall time, no faster.
            due = int((now - started) * rate)
            if received >= due:
                time.sleep(0.01)  # pacing a benchmark reader, not waiting for an event
                peak = max(peak, rss_kib(pid))
                continue
            chunk = exec_client.stdout.read1(min(1 << 20, due - received))
        else:
            chunk = exec_client.stdout.read1(1 << 20)
        if not chunk:
            break
        received += len(chunk)
        if received % (256 << 20) < len(chunk):
            peak = max(peak, rss_kib(pid))
    exec_client.wait()
    print(f"server RSS while streaming {received / GIB:.1f} GiB (10 MB/s for 20 s, then full speed)")
    print(f"  before {baseline / 1024:6.1f} MiB   peak {peak / 1024:6.1f} MiB   growth {(peak - baseline) / 1024:6.1f} MiB")


def resumable_attach() -> None:
    rounds = 3
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as config:
        # One container per round: each main process writes 1 GiB once, waiting for its attach.
        config.write("containers:\n  - id: demo\n    main: {command: [/bin/sh], stdin: true}\n")
        for index in range(rounds):
            config.write(f"  - id: gib{index}\n    main: {{command: [head, -c, '{GIB}', /dev/zero]}}\n")
        config.flush()
        server, address = start_server("--config", config.name)
        try:
            figures = []
            for index in range(rounds):
                start = time.monotonic()
                subprocess.run([EXECSTREAM, "attach", "--server", address, f"gib{index}"], check=True, stdout=subprocess.DEVNULL)
                attached = time.monotonic() - start
                start = time.monotonic()
                subprocess.run(
                    [EXECSTREAM, "exec", "--server", address, "demo", "--", "head", "-c", str(GIB), "/dev/zero"],
                    check=True, stdout=subprocess.DEVNULL,
                )
                figures.append((attached, time.monotonic() - start))
        finally:
            server.terminate()
            server.wait(timeout=60)
    attached, executed = sorted(figures)[len(figures) // 2]
    print(f"1 GiB of stdout, resumable attach vs exec (median of {rounds} interleaved)")
    print(f"  execstream attach (resumable)       {GIB / attached / 1e6:8.0f} MB/s")
    print(f"  execstream exec (native HTTP/2)     {GIB / executed / 1e6:8.0f} MB/s")
    print(f"  throughput ratio attach/exec: {executed / attached:.2f}×")


def tls_beside_plain(plain_address: str, plain_pid: int) -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Interop"))
    from pki import make_pki  # certificates made now, with openssl, as the tests make theirs

    pki = make_pki(pathlib.Path(tempfile.mkdtemp(prefix="execstream-bench-pki-")))
    server, tls_address = start_server("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))
    try:
        plain_latency = latency(plain_address)
        tls_latency = latency(tls_address, "--tls-ca", str(pki.ca), "--label", "TLS")
        p50 = lambda text: float(re.search(r"end to end.*?p50\s+([\d.]+)", text).group(1))
        print(plain_latency.rstrip())
        print(tls_latency.rstrip())
        print(f"  exec true p50, TLS/plain: {p50(tls_latency) / p50(plain_latency):.2f}x")
        figures = {"plain": [], "TLS": []}
        for _ in range(3):
            for name, address, pid, flags in (("plain", plain_address, plain_pid, []), ("TLS", tls_address, server.pid, ["--tls-ca", str(pki.ca)])):
                before = cpu_seconds(pid)
                line = subprocess.run(
                    [os.path.join(BIN, "StreamThroughput"), "--server", address, "--transport", "native", "--bytes", str(GIB), *flags],
                    check=True, capture_output=True, text=True,
                ).stdout.split()
                figures[name].append((float(line[3]), cpu_seconds(pid) - before))
        print("1 GiB of native stdout, TLS beside plain TCP (median of 3 interleaved)")
        plain_rate = sorted(figures["plain"])[1][0]
        for name in figures:
            rate, cpu = sorted(figures[name])[1]
            print(f"  {name:<26} {rate:8.0f} MB/s   server {cpu:5.2f} CPU-s   {rate / plain_rate:5.2f}x plain")
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    server, address = start_server()
    try:
        print(latency(address).rstrip())
        throughput(address, server.pid)
        transports(address, server.pid)
        memory(address, server.pid)
        tls_beside_plain(address, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    resumable_attach()


if __name__ == "__main__":
    main()
