"""A loopback TCP proxy that cuts connections: each of the first `cuts` connections is closed
(both sockets, mid-frame as it happens) once it has carried a seeded-random number of bytes in
either direction, or, with `cut_before`, just before those bytes would reach the client. Cuts are
decided by the bytes forwarded, never by time, so a run is repeatable.

The target is a TCP port on loopback or a unix socket path; a proxy of a unix socket listens on a
unix socket of its own (`address` is what a client passes as --server)."""
import os
import random
import socket
import tempfile
import threading


class CuttingProxy:
    def __init__(self, target: int | str, *, cuts: int, seed: int = 0, min_bytes: int = 0, max_bytes: int = 0, cut_before: bytes | None = None):
        self.target = target
        self.planned_cuts = cuts
        self.rng = random.Random(seed)
        self.min_bytes, self.max_bytes = min_bytes, max_bytes
        self.cut_before = cut_before
        self.lock = threading.Lock()
        self.cuts = 0
        self.connections = 0
        if isinstance(target, str):
            self.directory = tempfile.mkdtemp(prefix="cutting-proxy-")
            path = os.path.join(self.directory, "proxy.sock")
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(path)
            self.listener.listen(64)
            self.address = f"unix://{path}"
        else:
            self.listener = socket.create_server(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.listener.close()
        if self.address.startswith("unix://"):
            os.unlink(self.address[len("unix://"):])
            os.rmdir(self.directory)

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                cutting = self.connections <= self.planned_cuts
                budget = self.rng.randint(self.min_bytes, self.max_bytes) if cutting and self.cut_before is None else None
                pattern = self.cut_before if cutting else None
            threading.Thread(target=self._serve, args=(client, budget, pattern), daemon=True).start()

    def _serve(self, client: socket.socket, budget, pattern):
        try:
            if isinstance(self.target, str):
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(self.target)
            else:
                upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            return
        state = {"left": budget, "cut": False, "seen": b""}
        lock = threading.Lock()

        def cut():
            # Both ends see the connection die at once, as on a network failure.
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def pump(source: socket.socket, sink: socket.socket):
            try:
                while True:
                    data = source.recv(64 << 10)
                    if not data:
                        break
                    with lock:
                        if state["cut"]:
                            break
                        if pattern is not None and source is upstream:
                            # Look across reads: keep the tail that could start the pattern.
                            window = state["seen"] + data
                            found = window.find(pattern)
                            if found >= 0:
                                data = data[: max(0, found - len(state["seen"]))]
                                state["cut"] = True
                            state["seen"] = window[-(len(pattern) - 1) :]
                        if state["left"] is not None:
                            if len(data) >= state["left"]:
                                data = data[: state["left"]]
                                state["cut"] = True
                            state["left"] -= len(data)
                        cutting = state["cut"]
                    sink.sendall(data)
                    if cutting:
                        with self.lock:
                            self.cuts += 1
                        cut()
                        break
            except OSError:
                pass
            finally:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        threads = [threading.Thread(target=pump, args=(client, upstream), daemon=True), threading.Thread(target=pump, args=(upstream, client), daemon=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        client.close()
        upstream.close()
