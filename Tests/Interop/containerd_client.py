"""containerd's side of `containerd.services.streaming.v1.Streaming/Stream`, played with grpcio:
one bidirectional call per channel id, messages as `Any` with bare type URLs (PROTOCOLS.md §8)."""
import queue

import grpc
from google.protobuf import any_pb2, empty_pb2

_END = object()


def pack(message) -> any_pb2.Any:
    # containerd's typeurl uses the bare full name, not type.googleapis.com/…
    return any_pb2.Any(type_url=message.DESCRIPTOR.full_name, value=message.SerializeToString())


class Stream:
    """One Stream call. Credits are explicit: `grant(n)` sends a WindowUpdate; every Data the
    server sends is checked against what was granted (the server must never exceed it)."""

    def __init__(self, channel, protos, stream_id: str, *, wait_for_ack: bool = True):
        self.streaming, self.streaming_stubs, self.transfer = protos[0], protos[1], protos[2]
        self.id = stream_id
        self._requests = queue.Queue()
        self.call = self.streaming_stubs.StreamingStub(channel).Stream(iter(self._requests.get, _END))
        self.granted = 0
        self.received = 0
        self.credit_from_server = 0
        self.send_message(self.streaming.StreamInit(id=stream_id))
        if wait_for_ack:
            self.expect_ack()

    def send_message(self, message):
        self._requests.put(pack(message))

    def expect_ack(self):
        first = next(self.call)
        assert first.type_url.split("/")[-1] == "google.protobuf.Empty", first.type_url
        empty_pb2.Empty.FromString(first.value)

    def close_send(self):
        self._requests.put(_END)

    def cancel(self):
        self.call.cancel()

    # --- output ids ---

    def grant(self, byte_count: int):
        self.granted += byte_count
        self.send_message(self.transfer.WindowUpdate(update=byte_count))

    def read(self):
        """The next Data payload; None at the end of the stream (OK). Other endings raise."""
        try:
            message = next(self.call)
        except StopIteration:
            return None
        assert message.type_url == "containerd.types.transfer.Data", message.type_url
        data = self.transfer.Data.FromString(message.value).data
        self.received += len(data)
        assert self.received <= self.granted, f"server sent {self.received} bytes with {self.granted} granted"
        return data

    def read_all(self, window: int = 1 << 20):
        """containerd's ReceiveStream pattern: keep between one and two windows granted."""
        self.grant(window)
        while True:
            data = self.read()
            if data is None:
                return
            if self.granted - self.received < window:
                self.grant(window)
            yield data

    # --- stdin ids ---

    def take_credit(self) -> int:
        """Reads server messages until it grants credit; returns the credit now available."""
        message = next(self.call)
        assert message.type_url == "containerd.types.transfer.WindowUpdate", message.type_url
        self.credit_from_server += self.transfer.WindowUpdate.FromString(message.value).update
        return self.credit_from_server

    def write(self, data: bytes, chunk: int = 32 << 10):
        """Sends `data` as Data messages, never beyond the server's credit."""
        view = memoryview(data)
        while view:
            while self.credit_from_server == 0:
                self.take_credit()
            size = min(chunk, len(view), self.credit_from_server)
            self.send_message(self.transfer.Data(data=bytes(view[:size])))
            self.credit_from_server -= size
            view = view[size:]

    def finish(self):
        """After close_send: drain the server's side; returns when it ends with OK."""
        for message in self.call:
            assert message.type_url == "containerd.types.transfer.WindowUpdate", message.type_url


def status_of(call) -> grpc.StatusCode:
    return call.code()
