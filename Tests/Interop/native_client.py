"""A client of ExecStream's native HTTP/2 streaming format (PROTOCOLS.md §9) written with the
Python `h2` library: an independent implementation of the client side of the wire format."""
import dataclasses
import json
import socket
import struct
import urllib.parse

import h2.config
import h2.connection
import h2.events

import transport

CONTENT_TYPE = "application/vnd.execstream.v1"
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
# Resumable attach: position (server → client), acknowledge (client → server), stdin window.
POSITION, ACKNOWLEDGE, STDIN_WINDOW = 16, 17, 18


def frame(channel: int, payload: bytes) -> bytes:
    return struct.pack(">BI", channel, len(payload)) + payload


@dataclasses.dataclass
class NativeResult:
    status: int
    headers: dict
    stdout: bytes = b""
    stderr: bytes = b""
    closed: list = dataclasses.field(default_factory=list)
    status_json: dict | None = None
    trailers: dict = dataclasses.field(default_factory=dict)
    body: bytes = b""
    reset_code: int | None = None
    order: list = dataclasses.field(default_factory=list)
    # Resumable attach: (position offset, stdout payload) per delivery, and stdin windows.
    deliveries: list = dataclasses.field(default_factory=list)
    stdin_windows: list = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int | None:
        value = self.trailers.get("execstream-exit-code")
        return None if value is None else int(value)


class NativeStream:
    """One request on its own connection: send frames, read until the response ends."""

    def __init__(self, url: str, content_type: str = CONTENT_TYPE, method: str = "POST", timeout: float = 60, terminal_size=None, headers=()):
        parsed = urllib.parse.urlsplit(url)
        self.sock = transport.connect(url, timeout, ["h2"])
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            self.stream_id,
            [(":method", method), (":scheme", parsed.scheme), (":authority", parsed.netloc), (":path", parsed.path), ("content-type", content_type)]
            + ([("execstream-terminal-size", f"{terminal_size[0]}x{terminal_size[1]}")] if terminal_size else [])
            + list(headers),
        )
        self.flush()
        self.buffer = b""
        self.result = None
        self.done = False
        # With on_stdout set, stdout is handed over instead of kept (for large outputs).
        self.on_stdout = None
        self.stdout_bytes = 0
        self.position = None

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send(self, data: bytes, end: bool = False):
        """Sends request body bytes, waiting for flow-control window as needed."""
        while data:
            window = min(self.conn.local_flow_control_window(self.stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump_once()
                continue
            chunk, data = data[:window], data[window:]
            self.conn.send_data(self.stream_id, chunk)
            self.flush()
        if end:
            self.conn.end_stream(self.stream_id)
            self.flush()

    def reset(self):
        self.conn.reset_stream(self.stream_id)
        self.flush()

    def pump_once(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("connection closed")
        for event in self.conn.receive_data(data):
            self.handle(event)
        self.flush()

    def handle(self, event):
        if isinstance(event, h2.events.ResponseReceived):
            headers = dict(event.headers)
            self.result = NativeResult(status=int(headers[":status"]), headers=headers)
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if self.on_stdout is None:
                self.result.body += event.data
            self.buffer += event.data
            self.parse_frames()
        elif isinstance(event, h2.events.TrailersReceived):
            self.result.trailers = dict(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            self.done = True
        elif isinstance(event, h2.events.StreamReset):
            if self.result is None:
                self.result = NativeResult(status=0, headers={})
            self.result.reset_code = event.error_code
            self.done = True

    def parse_frames(self):
        if self.result.headers.get("content-type") != CONTENT_TYPE:
            return
        view = memoryview(self.buffer)
        offset = 0
        while len(view) - offset >= 5:
            channel, length = struct.unpack(">BI", view[offset : offset + 5])
            if len(view) - offset < 5 + length:
                break
            payload = bytes(view[offset + 5 : offset + 5 + length])
            offset += 5 + length
            if self.on_stdout is None or channel != STDOUT:
                self.result.order.append(channel if channel != CLOSE else ("close", payload[0]))
            if channel == STDOUT:
                self.stdout_bytes += len(payload)
                if self.on_stdout is not None:
                    self.on_stdout(payload)
                else:
                    self.result.stdout += payload
            elif channel == STDERR:
                self.result.stderr += payload
            elif channel == STATUS:
                self.result.status_json = json.loads(payload)
            elif channel == CLOSE:
                self.result.closed.append(payload[0])
            elif channel == POSITION:
                self.position = struct.unpack(">BQ", payload)
            elif channel == STDIN_WINDOW:
                self.result.stdin_windows.append(struct.unpack(">QQ", payload))
            if channel == STDOUT and self.position is not None:
                self.result.deliveries.append((self.position[1], payload))
                self.position = None
        view.release()
        self.buffer = self.buffer[offset:]

    def wait(self) -> NativeResult:
        while not self.done:
            self.pump_once()
        return self.result

    def wait_for_stdout(self, marker: bytes):
        while self.result is None or marker not in self.result.stdout:
            self.pump_once()

    def close(self):
        self.sock.close()


def exec_url(runtime, container: str, cmd: list, *, tty=False, stdin=False, stdout=True, stderr=True) -> str:
    api, service = runtime
    return service.Exec(api.ExecRequest(container_id=container, cmd=cmd, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr), timeout=10).url


def run(runtime, container: str, cmd: list, *, input: bytes | None = None, tty=False, stderr=True, resize=None, size=None) -> NativeResult:
    url = exec_url(runtime, container, cmd, tty=tty, stdin=input is not None, stderr=stderr and not tty)
    stream = NativeStream(url, terminal_size=size)
    try:
        if resize is not None:
            stream.send(frame(RESIZE, json.dumps({"Width": resize[0], "Height": resize[1]}).encode()))
        if input is not None:
            for offset in range(0, len(input), 32 << 10):
                stream.send(frame(STDIN, input[offset : offset + (32 << 10)]))
            stream.send(b"", end=True)
        else:
            stream.send(b"", end=True)
        return stream.wait()
    finally:
        stream.close()
