#!/usr/bin/env python3
"""Writes the small seed corpus of every fuzz target into Fuzz/Corpus/<target>/.

The seeds are real messages of each protocol (what crictl, the kubelet, client-go and grpcio
send), so libFuzzer starts from valid structure and mutates from there. Run it with the test
virtualenv (it uses spdy-py) after changing it: .venv/bin/python Fuzz/seeds.py. The files are
committed.
"""
import json
import os
import struct
import zlib

from spdy import dictionary as spdy_dictionary

HERE = os.path.dirname(os.path.abspath(__file__))

# SPDY/3's header dictionary, from spdy-py (the interop tests' independent implementation).
SPDY_DICTIONARY = spdy_dictionary.zdict


def write(target, name, data):
    folder = os.path.join(HERE, "Corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def spdy_header_block(headers):
    block = struct.pack(">I", len(headers))
    for name, value in headers:
        block += struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(value)) + value.encode()
    return block


def spdy_control(kind, flags, payload):
    return struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(payload)) + payload


def spdy_seeds():
    deflate = zlib.compressobj(zdict=SPDY_DICTIONARY)
    frames = b""
    for stream_id, stream_type in ((1, "error"), (3, "stdin"), (5, "stdout"), (7, "stderr"), (9, "resize")):
        block = spdy_header_block([("streamtype", stream_type)])
        compressed = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
        frames += spdy_control(1, 0, struct.pack(">IIBB", stream_id, 0, 0, 0) + compressed)
    frames += struct.pack(">II", 3, 3) + b"hi\n"
    frames += struct.pack(">II", 9, 0x01000000 | 26) + b'{"Width":80,"Height":24}\n\n'
    frames += spdy_control(6, 0, struct.pack(">I", 1))
    frames += spdy_control(3, 0, struct.pack(">II", 5, 5))
    frames += spdy_control(9, 0, struct.pack(">II", 5, 65536))
    frames += spdy_control(7, 0, struct.pack(">II", 9, 0))
    write("spdy-frames", "exec-session", frames)
    write("spdy-frames", "settings-and-unknown", spdy_control(4, 0, struct.pack(">I", 0)) + spdy_control(12, 0, b"\0" * 4))
    write("spdy-frames", "data-fin", struct.pack(">II", 1, 0x01000000))

    fresh = zlib.compressobj(zdict=SPDY_DICTIONARY)
    block = spdy_header_block([("streamtype", "data"), ("port", "8080"), ("requestid", "0")])
    write("spdy-header-block", "portforward-compressed", fresh.compress(block) + fresh.flush(zlib.Z_SYNC_FLUSH))
    write("spdy-header-block", "plain-block", spdy_header_block([("streamtype", "stdout"), ("x", "a\0b")]))


def masked(opcode, payload, fin=True, mask=b"\x01\x02\x03\x04"):
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        header = bytes([first, 0x80 | len(payload)])
    elif len(payload) < 65536:
        header = bytes([first, 0x80 | 126]) + struct.pack(">H", len(payload))
    else:
        header = bytes([first, 0x80 | 127]) + struct.pack(">Q", len(payload))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def websocket_seeds():
    write("websocket-frames", "stdin-then-close", masked(2, b"\x00echo hi\n") + masked(2, b"\xff\x00") + masked(8, struct.pack(">H", 1000)))
    write("websocket-frames", "fragmented-text", masked(1, b"0aGk=", fin=False) + masked(9, b"p") + masked(0, b"Cg=="))
    write("websocket-frames", "extended-length", masked(2, b"\x00" + b"x" * 300))
    # What a server sends a port-forward client: each channel's port, data, an error, the close.
    port = struct.pack("<H", 8080)
    write("websocket-server-frames", "port-forward", unmasked(2, b"\x00" + port) + unmasked(2, b"\x01" + port)
          + unmasked(2, b"\x00HTTP/1.0 200 OK\r\n\r\nhello") + unmasked(8, struct.pack(">H", 1000)))
    write("websocket-server-frames", "error-and-long", unmasked(2, b"\x01error forwarding port 80") + unmasked(2, b"\x00" + b"y" * 70000))


def unmasked(opcode, payload, fin=True):
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        return bytes([first, len(payload)]) + payload
    if len(payload) < 65536:
        return bytes([first, 126]) + struct.pack(">H", len(payload)) + payload
    return bytes([first, 127]) + struct.pack(">Q", len(payload)) + payload


def native_seeds():
    def frame(channel, payload):
        return struct.pack(">BI", channel, len(payload)) + payload
    write("native-frames", "exec", frame(0, b"hi\n") + frame(4, b'{"Width":80,"Height":24}') + frame(255, b"\x00"))
    write("native-frames", "resumable", frame(17, b"\x01" + struct.pack(">Q", 1024)) + frame(16, b"\x02" + struct.pack(">Q", 7)) + frame(18, struct.pack(">QQ", 1, 2)))


def channel_seeds():
    write("channel-messages", "binary-stdin", b"\x00echo hi\n")
    write("channel-messages", "base64-stdin", b"0ZWNobyBoaQo=")
    write("channel-messages", "v5-close", b"\xff\x00")
    write("channel-messages", "resize", b'\x04{"Width":80,"Height":24}')


def resize_seeds():
    write("resize-json", "two-sizes", '{"Width":80,"Height":24}{"Height":50, "Width":200}')
    write("resize-json", "escapes-and-nesting", '{"x":{"y":["\\"}",1.5e3]},"Width":1,"Height":2}\n')


def grpc_seeds():
    write("grpc-framing", "two-messages", b"\x00\x00\x00\x00\x03abc\x00\x00\x00\x00\x00")
    write("grpc-framing", "timeout", b"100m")
    write("grpc-framing", "percent", b"bad%20input%ZZ%e2%82")


def preface_seeds():
    write("connection-preface", "http2", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    write("connection-preface", "http1-upgrade", b"GET /exec/abc HTTP/1.1\r\nUpgrade: SPDY/3.1\r\n\r\n")
    write("connection-preface", "malformed", b"PRI * HTTP/1.1\r\n")


def config_seeds():
    write("configuration-file", "full", """listen: ["127.0.0.1:10350", "[::1]:10350"]
controlListen: ["127.0.0.1:10351"]
criSocket: /run/execstream/execstream.sock
socketGroup: execstream
tls: {certFile: /etc/execstream/tls.crt, keyFile: /etc/execstream/tls.key, clientCAFile: /etc/execstream/clients.crt}
advertiseAddress: 10.0.0.5
execSyncMaxOutputBytes: 16777216
sessions: {postExitDrainSeconds: 2, killProcessGroupOnDisconnect: true, maxConcurrentSessions: 1000,
           streamCreationTimeoutSeconds: 30, streamIdleTimeoutSeconds: 14400}
http2: {keepaliveIntervalSeconds: 60, keepaliveTimeoutSeconds: 20, idleTimeoutSeconds: 1800,
        shutdownGraceSeconds: 30, maxConcurrentStreams: 1000, maxHeaderListSize: 65536}
grpc: {maxMessageBytes: 16777216}
containers:
  - id: web
    name: web
    labels: {app: web}
    isolation: namespaces
    env: ["PATH=/usr/bin:/bin"]
    workingDir: /
    user: 1000
    group: 1000
    main: {command: ["/bin/sh"], tty: false, stdin: true, stdinOnce: false}
""")
    write("configuration-file", "minimal", "listen: ['127.0.0.1:0']\ncriSocket: ''\n")
    write("configuration-file", "extremes", "http2: {keepaliveIntervalSeconds: 1e300, maxConcurrentStreams: -1}\n"
          "sessions: {postExitDrainSeconds: .nan}\ngrpc: {maxMessageBytes: 9223372036854775807}\n")


def console_seeds():
    # What a shell on a terminal prints for one fenced command (nonce 0123abcd, as the target's).
    echo = "$ printf '%s%s\\n' ESB_ 0123abcd; { echo hi\r\n> }; printf '\\n%s%s:%s\\n' ESE_ 0123abcd \"$?\"\r\n"
    write("console-output", "fenced-command", echo + "ESB_0123abcd\r\nhi\r\n\r\nESE_0123abcd:0\r\n$ ")
    write("console-output", "fence-like-output-no-final-newline",
          echo + "ESB_0123abcd\r\nESE_ffffffff:0\r\ngot [x]\r\n$ mid-line $ \r\nESE_0123abcd:9 inline\r\nno newline\r\nESE_0123abcd:1\r\n$ ")
    write("console-output", "invalid-utf8", b"\xff\xe2\x82\xac\xe2\x82 got [\xc3\xa9]\r\n123\r\n$ ESB_0123abcd\r\n\xf0\x9f\r\nESE_0123abcd:127\r\n")


if __name__ == "__main__":
    spdy_seeds()
    websocket_seeds()
    native_seeds()
    channel_seeds()
    resize_seeds()
    grpc_seeds()
    preface_seeds()
    config_seeds()
    console_seeds()
