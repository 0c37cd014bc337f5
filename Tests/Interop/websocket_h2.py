"""A WebSocket-over-HTTP/2 client (RFC 8441) built from Python h2 and hand-made RFC 6455
frames: an implementation of the client side we did not write in Swift."""
import os
import socket
import struct
import urllib.parse

import h2.config
import h2.connection
import h2.events
import h2.settings

import transport

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def client_frame(opcode: int, payload: bytes, fin: bool = True, zero_mask: bool = False) -> bytes:
    """A masked client frame (with a zero mask the payload goes as it is: large frames, fast)."""
    mask = bytes(4) if zero_mask else os.urandom(4)
    if zero_mask:
        return client_frame_head(opcode, len(payload), fin) + mask + payload
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    elif len(payload) < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def client_frame_head(opcode: int, length: int, fin: bool = True) -> bytes:
    """The first bytes of a masked client frame, up to its mask."""
    head = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:
        return head + bytes([0x80 | length])
    if length < 65536:
        return head + bytes([0x80 | 126]) + struct.pack(">H", length)
    return head + bytes([0x80 | 127]) + struct.pack(">Q", length)


class WebSocketOverH2:
    def __init__(self, url: str, subprotocols=None, timeout: float = 30, wait: bool = True):
        parsed = urllib.parse.urlsplit(url)
        self.sock = transport.connect(url, timeout, ["h2"])
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        # Extended CONNECT needs the server's SETTINGS_ENABLE_CONNECT_PROTOCOL first.
        while not self.conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL):
            self._pump()
        self.stream_id = self.conn.get_next_available_stream_id()
        headers = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", parsed.scheme), (":authority", parsed.netloc), (":path", parsed.path)]
        headers.append(("sec-websocket-version", "13"))
        if subprotocols:
            headers.append(("sec-websocket-protocol", ", ".join(subprotocols)))
        self.conn.send_headers(self.stream_id, headers)
        self.sock.sendall(self.conn.data_to_send())
        self.status = None
        self.response_headers = {}
        self.buffer = b""
        self.frames = []
        self.ended = False
        self.reset_code = None
        while wait and self.status is None and not self.ended:
            self._pump()

    def _pump(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("connection closed")
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.response_headers = dict(event.headers)
                self.status = int(self.response_headers[":status"])
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.buffer += event.data
                self._parse()
            elif isinstance(event, h2.events.StreamEnded):
                self.ended = True
            elif isinstance(event, h2.events.StreamReset):
                self.reset_code = event.error_code
                self.ended = True
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def _parse(self):
        while len(self.buffer) >= 2:
            first, second = self.buffer[0], self.buffer[1]
            assert second & 0x80 == 0, "server frames are never masked"
            length, offset = second & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, offset = struct.unpack(">H", self.buffer[2:4])[0], 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length, offset = struct.unpack(">Q", self.buffer[2:10])[0], 10
            if len(self.buffer) < offset + length:
                return
            self.frames.append((first & 0x0F, self.buffer[offset : offset + length]))
            self.buffer = self.buffer[offset + length :]

    @property
    def subprotocol(self):
        return self.response_headers.get("sec-websocket-protocol")

    def send(self, opcode: int, payload: bytes, fin: bool = True, zero_mask: bool = False):
        data = client_frame(opcode, payload, fin, zero_mask)
        while data:
            window = min(self.conn.local_flow_control_window(self.stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                self._pump()
                continue
            self.conn.send_data(self.stream_id, data[:window])
            data = data[window:]
            self.sock.sendall(self.conn.data_to_send())

    def receive_until_close(self) -> list:
        while not any(op == OP_CLOSE for op, _ in self.frames) and not self.ended:
            self._pump()
        return self.frames

    def wait_until_ended(self):
        """The server ends the stream (END_STREAM) after its close frame."""
        while not self.ended:
            self._pump()

    def wait_for(self, predicate):
        while not predicate(self.frames):
            self._pump()

    # websocket-client's names, so clients written for it (SPDYClient.over_websocket) run over
    # this carrier too.
    def send_binary(self, payload: bytes):
        self.send(OP_BINARY, payload)

    def recv_data(self, control_frame: bool = True):
        while not self.frames:
            if self.ended:
                return OP_CLOSE, b""
            self._pump()
        return self.frames.pop(0)

    def getsubprotocol(self):
        return self.subprotocol

    def close(self):
        self.sock.close()
