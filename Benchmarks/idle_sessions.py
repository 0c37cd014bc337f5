#!/usr/bin/env python3
"""Server memory per idle exec session, per transport: RSS of a release `execstream serve` before
and after opening N sessions of `sleep` that stay open (nothing read or written), divided by N.
Uses the interop tests' clients (Tests/Interop), so run it with the test virtualenv:

    .venv/bin/python Benchmarks/idle_sessions.py [--bin PATH/TO/execstream] [--sessions 200]

Figures, not assertions."""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "Interop"))

import grpc  # noqa: E402
import websocket  # noqa: E402

from native_client import NativeStream  # noqa: E402
from spdy_client import SPDYClient  # noqa: E402
from websocket_h2 import WebSocketOverH2  # noqa: E402


def stubs():
    out = tempfile.mkdtemp(prefix="execstream-bench-stubs-")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'Protos'}", f"--python_out={out}", f"--grpc_python_out={out}", "runtime/v1/api.proto"],
        check=True,
    )
    sys.path.insert(0, out)
    from runtime.v1 import api_pb2, api_pb2_grpc

    return api_pb2, api_pb2_grpc


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def open_session(transport: str, url: str):
    if transport == "native":
        stream = NativeStream(url)
        while stream.result is None:
            stream.pump_once()
        return stream.sock
    if transport == "websocket":
        return websocket.create_connection(url.replace("http://", "ws://"), subprotocols=["v5.channel.k8s.io"], timeout=30)
    if transport == "websocket-h2":
        return WebSocketOverH2(url, ["v5.channel.k8s.io"]).sock
    client = SPDYClient(url, ["v4.channel.k8s.io"])
    for streamtype in ("error", "stdout", "stderr"):
        client.open_stream(streamtype)
    return client.sock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=None)
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args()
    binary = args.bin or os.path.join(
        subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip(),
        "execstream",
    )
    api, api_grpc = stubs()
    directory = tempfile.mkdtemp(prefix="execstream-bench-")
    server = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--cri-socket", f"{directory}/s.sock", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        for line in server.stdout:
            if line.startswith("listening on unix://"):
                break
        channel = grpc.insecure_channel(f"unix://{directory}/s.sock")
        service = api_grpc.RuntimeServiceStub(channel)

        def url() -> str:
            request = api.ExecRequest(container_id="demo", cmd=["sleep", "600"], stdout=True, stderr=True)
            return service.Exec(request, timeout=10).url

        print(f"server RSS per idle exec session ({args.sessions} open at once, each transport on its own)")
        for transport in ("native", "websocket", "websocket-h2", "spdy"):
            for _ in range(20):  # warm-up
                open_session(transport, url()).close()
            time.sleep(1)  # let the warm-up sessions' kills and reaps finish (a benchmark, not a test)
            before = rss_kib(server.pid)
            held = [open_session(transport, url()) for _ in range(args.sessions)]
            after = rss_kib(server.pid)
            print(f"  {transport:<13} {(after - before) / args.sessions:6.1f} KiB/session")
            for sock in held:
                sock.close()
            time.sleep(2)
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
