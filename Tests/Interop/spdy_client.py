"""A SPDY/3.1 remote-command client for the interop tests, shaped like client-go's (streams
created one at a time in the kubelet's order, each awaited). Its header compression uses the
dictionary of the `spdy-py` package, and every byte the server sends is also decoded by spdy-py's
own framer: our framing checked against an implementation we did not write."""
import socket
import struct
import urllib.parse
import zlib

from spdy import conn as spdy_conn
from spdy import dictionary as spdy_dictionary

import transport

SYN_STREAM, SYN_REPLY, RST_STREAM, PING, GOAWAY = 1, 2, 3, 6, 7


class SPDYError(Exception):
    pass


def header_block(headers: dict, deflate) -> bytes:
    raw = struct.pack(">I", len(headers))
    for name, value in headers.items():
        raw += struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(value)) + value.encode()
    return deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)


class SPDYClient:
    def __init__(self, url: str, protocols: list, timeout: float = 30, method: str = "POST"):
        parsed = urllib.parse.urlsplit(url)
        self.sock = transport.connect(url, timeout, ["http/1.1"])
        lines = [f"{method} {parsed.path} HTTP/1.1", f"Host: {parsed.netloc}", "Connection: Upgrade", "Upgrade: SPDY/3.1"]
        lines += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1)  # byte by byte: nothing may follow the 101 unasked
            if not chunk:
                raise SPDYError("connection closed during the upgrade")
            response += chunk
        head = response.split(b"\r\n\r\n")[0].decode()
        self.status = int(head.split()[1])
        self.headers = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())
        self.body = b""
        if self.status != 101:
            length = int(self.headers.get("content-length", ["0"])[0])
            while len(self.body) < length:
                self.body += self.sock.recv(65536)
            return
        self.protocol = self.headers.get("x-stream-protocol-version", [None])[0]
        self._start_session()

    @classmethod
    def over_websocket(cls, url: str, subprotocol: str = "SPDY/3.1+portforward.k8s.io"):
        """The SPDY session tunnelled in WebSocket binary messages (port-forward since 1.31)."""
        import websocket

        client = cls.__new__(cls)
        client.ws = websocket.create_connection(
            url.replace("https://", "wss://").replace("http://", "ws://"), subprotocols=[subprotocol], timeout=30, sslopt=transport.websocket_sslopt()
        )
        client.protocol = client.ws.getsubprotocol()
        client.status = 101
        client._start_session()
        return client

    @classmethod
    def over_websocket_h2(cls, url: str, subprotocol: str = "SPDY/3.1+portforward.k8s.io"):
        """The SPDY session tunnelled in a WebSocket over HTTP/2 (RFC 8441)."""
        from websocket_h2 import WebSocketOverH2

        client = cls.__new__(cls)
        client.ws = WebSocketOverH2(url, [subprotocol])
        client.protocol = client.ws.getsubprotocol()
        client.status = client.ws.status
        client._start_session()
        return client

    def _start_session(self):
        self.deflate = zlib.compressobj(zdict=spdy_dictionary.zdict)
        self.inflate = zlib.decompressobj(zdict=spdy_dictionary.zdict)
        self.independent = spdy_conn.Framer()
        self.buffer = b""
        self.next_id = 1
        self.streams = {}
        self.received = {}
        self.fin = set()
        self.replied = set()
        self.pongs = []
        self.goaway = False
        self.closed = False
        self.resets = {}

    # --- sending ---

    def _send(self, data: bytes):
        if getattr(self, "ws", None) is not None:
            self.ws.send_binary(data)
        else:
            self.sock.sendall(data)

    def _recv(self) -> bytes:
        if getattr(self, "ws", None) is not None:
            import websocket

            opcode, data = self.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.ws_close_code = int.from_bytes(data[:2], "big")
                return b""
            return data
        return self.sock.recv(1 << 20)

    def control(self, frame_type: int, flags: int, payload: bytes):
        self._send(struct.pack(">HHI", 0x8003, frame_type, (flags << 24) | len(payload)) + payload)

    def open_stream(self, streamtype: str, fin: bool = False, headers: dict | None = None, key: str | None = None) -> int:
        stream_id = self.next_id
        self.next_id += 2
        block = header_block({"streamtype": streamtype, **(headers or {})}, self.deflate)
        self.control(SYN_STREAM, 1 if fin else 0, struct.pack(">IIBB", stream_id, 0, 0, 0) + block)
        self.streams[key or streamtype] = stream_id
        self.received[stream_id] = b""
        while stream_id not in self.replied and stream_id not in self.resets:
            self.pump()
        return stream_id

    def send(self, streamtype: str, data: bytes, fin: bool = False):
        stream_id = self.streams[streamtype]
        self._send(struct.pack(">II", stream_id, ((1 if fin else 0) << 24) | len(data)) + data)

    def ping(self, ping_id: int):
        self.control(PING, 0, struct.pack(">I", ping_id))

    # --- receiving ---

    def pump(self):
        data = self._recv()
        if not data:
            self.closed = True
            raise SPDYError("connection closed")
        self.check_independently(data)
        self.buffer += data
        while len(self.buffer) >= 8:
            first, second = struct.unpack(">II", self.buffer[:8])
            flags, length = second >> 24, second & 0xFFFFFF
            if len(self.buffer) < 8 + length:
                return
            payload, self.buffer = self.buffer[8 : 8 + length], self.buffer[8 + length :]
            if first & 0x80000000:
                frame_type = first & 0xFFFF
                if frame_type == SYN_REPLY:
                    stream_id = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                    self.inflate.decompress(payload[4:])
                    self.replied.add(stream_id)
                elif frame_type == PING:
                    self.pongs.append(struct.unpack(">I", payload)[0])
                elif frame_type == GOAWAY:
                    self.goaway = True
                    self.goaway_status = struct.unpack(">I", payload[4:8])[0] if len(payload) >= 8 else None
                elif frame_type == RST_STREAM:
                    stream_id, status = struct.unpack(">II", payload)
                    self.resets[stream_id & 0x7FFFFFFF] = status
                else:
                    raise SPDYError(f"unexpected control frame {frame_type}")
            else:
                stream_id = first & 0x7FFFFFFF
                self.received[stream_id] = self.received.get(stream_id, b"") + payload
                if flags & 1:
                    self.fin.add(stream_id)

    def forward_get(self, port: int, request_id: int, path: str) -> bytes:
        """One forwarded connection as client-go makes it (error stream half-closed at once, then
        the data stream, paired by requestid) carrying one HTTP/1.1 GET; returns the response."""
        headers = {"port": str(port), "requestid": str(request_id)}
        self.open_stream("error", fin=True, headers=headers, key=f"error-{request_id}")
        self.open_stream("data", headers=headers, key=f"data-{request_id}")
        self.send(f"data-{request_id}", f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data_stream = self.streams[f"data-{request_id}"]
        while data_stream not in self.fin:
            self.pump()
        return self.received[data_stream]

    def check_independently(self, data: bytes):
        for frame in self.independent.read_frames(data) or []:
            if frame["control"]:
                assert frame["version"] == 3
                assert frame["type"] in (SYN_REPLY, PING, GOAWAY, RST_STREAM), frame["type"]
                if frame["type"] == SYN_REPLY:
                    # spdy-py inflated our header block with its own dictionary and zlib stream.
                    assert frame["headers"] == {}
                    assert frame["stream_id"] in self.streams.values()

    def run_until_closed(self):
        try:
            while not self.closed:
                self.pump()
        except SPDYError:
            pass
        except OSError:
            self.closed = True

    def output(self, streamtype: str) -> bytes:
        return self.received.get(self.streams.get(streamtype, -1), b"")

    def close(self):
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        else:
            self.sock.close()
