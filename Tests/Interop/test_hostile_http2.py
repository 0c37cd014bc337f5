"""Hostile HTTP/2 input. Each case checks that the offending stream or connection gets the right
error, that a bystander connection opened before it keeps working, that new connections work,
and that the server's memory stays bounded. Frames are built with hyperframe and hpack (the
libraries under Python's h2), so malformed ones can be sent on purpose."""
import socket

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, ENHANCE_YOUR_CALM = 0x1, 0x3, 0x5, 0xB


class RawConnection:
    """A socket that speaks HTTP/2 frame by frame, with no client-side checks."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""
        self.encoder = hpack.Encoder()

    def send(self, *frames_or_bytes):
        self.sock.sendall(b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames_or_bytes))

    def start(self):
        self.send(PREFACE, SettingsFrame(0))

    def request_headers(self, stream_id: int, path="/healthz", extra=(), end_stream=True) -> bytes:
        return self.encoder.encode([(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", path), *extra])

    def next_frame(self):
        """The next frame, or None once the server closed the connection."""
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                    self.buffer = self.buffer[9 + length :]
                    return frame
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def frames_until_closed(self, limit=100_000):
        frames = []
        while len(frames) < limit:
            frame = self.next_frame()
            if frame is None:
                return frames
            frames.append(frame)
        raise AssertionError("the server did not close the connection")

    def close(self):
        self.sock.close()


def goaway_of(frames):
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways, f"expected a GOAWAY, got {[type(f).__name__ for f in frames]}"
    return goaways[-1]


class HealthyClient:
    """A well-behaved h2 connection that stays open while the hostile cases run."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.connection.initiate_connection()
        self.sock.sendall(self.connection.data_to_send())

    def get(self, path="/healthz", extra_headers=()):
        stream_id = self.connection.get_next_available_stream_id()
        self.connection.send_headers(
            stream_id,
            [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", path), *extra_headers],
            end_stream=True,
        )
        self.sock.sendall(self.connection.data_to_send())
        status, body = None, b""
        while True:
            data = self.sock.recv(65536)
            assert data, "the connection closed"
            for event in self.connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                    status = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                    body += event.data
                    self.connection.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    self.sock.sendall(self.connection.data_to_send())
                    return status, body
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    raise AssertionError(f"stream reset with {event.error_code}")
            self.sock.sendall(self.connection.data_to_send())


@pytest.fixture(scope="module")
def bystander(server):
    client = HealthyClient(server.port)
    assert client.get() == (200, b"ok\n")
    yield client
    client.sock.close()


@pytest.fixture(autouse=True)
def nothing_else_is_harmed(server, bystander):
    yield
    assert server.is_running()
    assert bystander.get() == (200, b"ok\n"), "a connection opened before the attack still works"
    assert HealthyClient(server.port).get() == (200, b"ok\n"), "new connections work"
    assert server.rss_kib() < 512 * 1024, "the server's memory stays bounded"


def test_bytes_that_are_not_a_preface_get_an_http1_400(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
        assert response.startswith(b"HTTP/1.1 400")


def test_a_first_frame_that_is_not_settings_is_a_connection_error(server):
    raw = RawConnection(server.port)
    raw.send(PREFACE, PingFrame(0, b"12345678"))
    assert goaway_of(raw.frames_until_closed()).error_code == PROTOCOL_ERROR


def test_headers_on_stream_zero_is_a_connection_error(server):
    raw = RawConnection(server.port)
    raw.start()
    headers = HeadersFrame(1, raw.request_headers(1), flags=["END_HEADERS", "END_STREAM"])
    headers.stream_id = 0
    raw.send(headers)
    assert goaway_of(raw.frames_until_closed()).error_code == PROTOCOL_ERROR


def test_an_oversized_header_list_gets_431_and_the_connection_lives(server):
    client = HealthyClient(server.port)
    big = [(f"x-filler-{i}", "v" * 8000) for i in range(9)]  # 72 KB > the 64 KiB limit
    assert client.get(extra_headers=big) == (431, b"")
    assert client.get() == (200, b"ok\n")


def test_rapid_reset_is_stopped_with_goaway(server):
    raw = RawConnection(server.port)
    raw.start()
    frames = []
    for stream_id in range(1, 2 * 3000, 2):
        frames.append(HeadersFrame(stream_id, raw.request_headers(stream_id), flags=["END_HEADERS"]))
        frames.append(RstStreamFrame(stream_id, error_code=0x8))
    raw.send(*frames)
    goaway = goaway_of(raw.frames_until_closed())
    assert goaway.error_code != 0


def test_resets_of_answered_streams_do_not_count_as_rapid_reset(server):
    # gRPC clients reset every call the server ends before they half-close: 3,000 such resets
    # (three times the burst) are no attack, and the connection serves on.
    raw = RawConnection(server.port)
    raw.start()
    stream_id = 1
    for _ in range(30):
        batch = list(range(stream_id, stream_id + 200, 2))
        stream_id += 200
        raw.send(*[HeadersFrame(i, raw.request_headers(i), flags=["END_HEADERS"]) for i in batch])
        answered = set()
        while len(answered) < len(batch):
            frame = raw.next_frame()
            assert frame is not None and not isinstance(frame, GoAwayFrame), frame
            if frame.stream_id in batch and "END_STREAM" in frame.flags:
                answered.add(frame.stream_id)
        raw.send(*[RstStreamFrame(i, error_code=0x8) for i in batch])
    raw.send(HeadersFrame(stream_id, raw.request_headers(stream_id), flags=["END_HEADERS", "END_STREAM"]))
    while True:
        frame = raw.next_frame()
        assert frame is not None and not isinstance(frame, GoAwayFrame), frame
        if frame.stream_id == stream_id and "END_STREAM" in frame.flags:
            break
    raw.close()


def test_a_continuation_flood_is_stopped_with_goaway(server):
    raw = RawConnection(server.port)
    raw.start()
    block = raw.request_headers(1, extra=[("x-padding", "p" * 200)])
    pieces = [block[i : i + 4] for i in range(0, len(block), 4)]
    frames = [HeadersFrame(1, pieces[0])]
    frames += [ContinuationFrame(1, piece) for piece in pieces[1:-1]]
    frames.append(ContinuationFrame(1, pieces[-1], flags=["END_HEADERS"]))
    assert len(frames) > 20
    raw.send(*frames)
    assert goaway_of(raw.frames_until_closed()).error_code == ENHANCE_YOUR_CALM


def test_a_connection_window_overflow_is_a_flow_control_error(server):
    raw = RawConnection(server.port)
    raw.start()
    raw.send(WindowUpdateFrame(0, window_increment=2**31 - 1))
    assert goaway_of(raw.frames_until_closed()).error_code == FLOW_CONTROL_ERROR


def test_a_stream_window_overflow_resets_that_stream(server):
    raw = RawConnection(server.port)
    raw.start()
    raw.send(
        HeadersFrame(1, raw.request_headers(1, path="/debug/bytes?size=10"), flags=["END_HEADERS"]),
        WindowUpdateFrame(1, window_increment=2**31 - 1),
    )
    while True:
        frame = raw.next_frame()
        assert frame is not None and not isinstance(frame, GoAwayFrame)
        if isinstance(frame, RstStreamFrame) and frame.stream_id == 1:
            assert frame.error_code == FLOW_CONTROL_ERROR
            break
    raw.close()


def test_data_on_a_closed_stream_is_refused(server):
    raw = RawConnection(server.port)
    raw.start()
    raw.send(HeadersFrame(1, raw.request_headers(1), flags=["END_HEADERS", "END_STREAM"]))
    while True:
        frame = raw.next_frame()
        assert frame is not None
        if isinstance(frame, DataFrame) and frame.stream_id == 1 and "END_STREAM" in frame.flags:
            break
    raw.send(DataFrame(1, b"late", flags=["END_STREAM"]))
    frames = raw.frames_until_closed()
    errors = [f.error_code for f in frames if isinstance(f, (GoAwayFrame, RstStreamFrame))]
    assert STREAM_CLOSED in errors


def test_a_client_that_stops_reading_does_not_grow_the_server(server, bystander):
    # A huge window lets the server send as fast as it likes; the client then reads nothing.
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    connection = h2.connection.H2Connection(config)
    connection.local_settings = h2.settings.Settings(client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    connection.initiate_connection()
    connection.increment_flow_control_window(2**31 - 1 - 65535)
    connection.send_headers(
        1, [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", f"/debug/bytes?size={8 << 30}")], end_stream=True
    )
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    stalled.sendall(connection.data_to_send())
    before = server.rss_kib()
    # While that connection is stuck, other clients are served; the server buffers at most a
    # stream's high watermark plus the socket buffers, never gigabytes.
    for _ in range(200):
        assert bystander.get() == (200, b"ok\n")
    assert server.rss_kib() - before < 128 * 1024
    stalled.close()


@pytest.mark.parametrize("acknowledged", [False, True])
def test_streams_above_the_concurrency_limit_are_refused(execstream_bin, tmp_path, acknowledged):
    """nghttp2's policy, within RFC 9113 §5.1.2: a stream above a limit the client has not yet
    acknowledged is refused (REFUSED_STREAM, retryable); exceeding an acknowledged limit is a
    connection error (GOAWAY PROTOCOL_ERROR) after the streams below it."""
    from conftest import start_server, stop_server

    limited = start_server(execstream_bin, str(tmp_path / "l.sock"), "--max-concurrent-streams", "2")
    try:
        raw = RawConnection(limited.port)
        raw.start()
        if acknowledged:
            raw.send(SettingsFrame(0, flags=["ACK"]))
        # Three requests whose client side stays open: the third exceeds the limit of two.
        raw.send(*[HeadersFrame(sid, raw.request_headers(sid), flags=["END_HEADERS"]) for sid in (1, 3, 5)])
        while True:
            frame = raw.next_frame()
            assert frame is not None
            if isinstance(frame, RstStreamFrame):
                assert not acknowledged
                assert (frame.stream_id, frame.error_code) == (5, 0x7)  # REFUSED_STREAM
                break
            if isinstance(frame, GoAwayFrame):
                assert acknowledged
                assert (frame.last_stream_id, frame.error_code) == (3, PROTOCOL_ERROR)
                break
        raw.close()
    finally:
        assert stop_server(limited) == 0
