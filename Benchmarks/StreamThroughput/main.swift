// `make bench`: one exec's stdout (`head -c N /dev/zero`) read to the end over one transport
// (native HTTP/2, WebSocket v5 over HTTP/1.1 or over HTTP/2 (RFC 8441), or SPDY/3.1), against a
// running `execstream serve`.
// Usage: StreamThroughput --server CONTROL --transport native|websocket|websocket-h2|spdy [--bytes N]
//        [--tls-ca FILE]
// The Exec call goes to the control plane (the unix socket); the stream to the listener its URL
// names (native over TLS for an https:// URL).
// Prints one line: transport, bytes, seconds, MB/s. Benchmarks/exec_bench.py compares them.

import ExecStreamClient
import ExecStreamCore
import ExecStreamRemoteCommand
import ExecStreamHTTP2
import ExecStreamProtos
import Foundation
import NIOCore
import NIOPosix

let arguments = CommandLine.arguments
func argument(_ name: String) -> String? {
    arguments.firstIndex(of: name).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
}
guard let serverText = argument("--server"), let address = try? ListenAddress(parsing: serverText), let transport = argument("--transport") else {
    fatalError("usage: StreamThroughput --server CONTROL --transport native|websocket|websocket-h2|spdy [--bytes N] [--tls-ca FILE]")
}
let byteCount = argument("--bytes").flatMap { Int($0) } ?? (1 << 30)

let connection = try await HTTP2ClientConnection.connect(to: address)
let client = CRIClient(connection: connection)
let url = try await client.exec(.with {
    $0.containerID = "demo"
    $0.cmd = ["head", "-c", String(byteCount), "/dev/zero"]
    $0.stdout = true
}).url
let components = URLComponents(string: url)!
let path = components.path

/// Counts the stdout bytes a raw-socket client (WebSocket or SPDY) reads, until the server ends.
final class RawStreamCounter: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Mode { case websocket, spdy }

    let mode: Mode
    let path: String
    let done: EventLoopPromise<Int>
    var buffered = ByteBuffer()
    var upgraded = false
    var stdoutBytes = 0
    var spdyDecoder = SPDYFrameDecoder()
    let deflater = SPDYHeaderDeflater()

    init(mode: Mode, path: String, done: EventLoopPromise<Int>) {
        self.mode = mode
        self.path = path
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        var request = "GET \(self.path) HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\n"
        switch self.mode {
        case .websocket:
            request += "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            request += "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
        case .spdy:
            request += "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
        }
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.buffered.writeImmutableBuffer(self.unwrapInboundIn(data))
        if !self.upgraded {
            guard let end = self.buffered.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
            let headLength = end.upperBound - self.buffered.readableBytesView.startIndex
            let head = self.buffered.readString(length: headLength)!
            guard head.hasPrefix("HTTP/1.1 101") else {
                self.done.fail(ExecStreamError(code: .internalError, message: "upgrade refused: \(head)"))
                return
            }
            self.upgraded = true
            if self.mode == .spdy {
                // error (1), then stdout (3): all the streams an exec without stdin/stderr needs.
                for (id, type) in [(UInt32(1), "error"), (3, "stdout")] {
                    var frame = ByteBuffer()
                    let block = self.deflater.compress([("streamtype", type)])
                    SPDYFrameEncoder.encode(.synStream(streamID: id, associatedStreamID: 0, priority: 0, fin: false, unidirectional: false, headerBlock: block), into: &frame)
                    context.write(self.wrapOutboundOut(frame), promise: nil)
                }
                context.flush()
            }
        }
        switch self.mode {
        case .websocket: self.readWebSocket(context: context)
        case .spdy: self.readSPDY(context: context)
        }
        self.buffered.discardReadBytes()
    }

    private func readWebSocket(context: ChannelHandlerContext) {
        if WebSocketStdoutCounter.read(&self.buffered, into: &self.stdoutBytes) {
            self.done.succeed(self.stdoutBytes)
            context.close(promise: nil)
        }
    }

    private func readSPDY(context: ChannelHandlerContext) {
        while let frame = try? self.spdyDecoder.decode(buffer: &self.buffered) {
            switch frame {
            case .data(3, _, let payload):
                self.stdoutBytes += payload.readableBytes
            case .goAway:
                self.done.succeed(self.stdoutBytes)
                context.close(promise: nil)
                return
            default:
                break
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.done.succeed(self.stdoutBytes)
    }
}

/// Reads server frames of RFC 6455 from `buffer`, adding the stdout bytes of v5 binary messages
/// (channel 1) to `count`; true once the close frame has been read.
enum WebSocketStdoutCounter {
    static func read(_ buffer: inout ByteBuffer, into count: inout Int) -> Bool {
        while buffer.readableBytes >= 2 {
            let start = buffer.readerIndex
            let opcode = buffer.getInteger(at: start, as: UInt8.self)! & 0x0F
            var length = Int(buffer.getInteger(at: start + 1, as: UInt8.self)! & 0x7F)
            var offset = 2
            if length == 126 {
                guard let extended = buffer.getInteger(at: start + 2, as: UInt16.self) else { return false }
                length = Int(extended)
                offset = 4
            } else if length == 127 {
                guard let extended = buffer.getInteger(at: start + 2, as: UInt64.self) else { return false }
                length = Int(extended)
                offset = 10
            }
            guard buffer.readableBytes >= offset + length else { return false }
            if opcode == 0x2, length > 0, buffer.getInteger(at: start + offset, as: UInt8.self) == 1 {
                count += length - 1
            }
            buffer.moveReaderIndex(forwardBy: offset + length)
            if opcode == 0x8 {
                return true
            }
        }
        return false
    }
}

let clock = ContinuousClock()
let start = clock.now
let received: Int
switch transport {
case "native":
    let data = try await HTTP2ClientConnection.connect(toStreamingURL: url, tls: argument("--tls-ca").map { ClientTLSConfiguration(caFile: $0) })
    let stream = try await NativeStreamClient.open(url: url, on: data)
    var count = 0
    _ = try await stream.receive { _, bytes in count += bytes.readableBytes }
    received = count
case "websocket-h2":
    // RFC 8441: extended CONNECT on the data listener, then RFC 6455 frames in the stream's DATA.
    let data = try await HTTP2ClientConnection.connect(toStreamingURL: url, tls: argument("--tls-ca").map { ClientTLSConfiguration(caFile: $0) })
    let stream = try await data.makeStream(
        method: "CONNECT",
        path: path,
        headers: [
            HTTP2ClientHeader(":protocol", "websocket"), HTTP2ClientHeader("sec-websocket-version", "13"),
            HTTP2ClientHeader("sec-websocket-protocol", "v5.channel.k8s.io"),
        ]
    )
    var buffered = ByteBuffer()
    var count = 0
    reading: for try await event in stream.response {
        switch event {
        case .head(let status, _):
            precondition(status == 200, "extended CONNECT refused: \(status)")
        case .data(let chunk):
            buffered.writeImmutableBuffer(chunk)
            if WebSocketStdoutCounter.read(&buffered, into: &count) { break reading }
            buffered.discardReadBytes()
        case .trailers:
            break
        }
    }
    stream.reset()
    received = count
case "websocket", "spdy":
    let group = MultiThreadedEventLoopGroup.singleton
    let promise = group.any().makePromise(of: Int.self)
    let mode: RawStreamCounter.Mode = transport == "websocket" ? .websocket : .spdy
    let channel = try await ClientBootstrap(group: promise.futureResult.eventLoop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(RawStreamCounter(mode: mode, path: path, done: promise))
            }
        }
        .connect(host: components.host!.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: components.port!)
        .get()
    received = try await promise.futureResult.get()
    channel.close(promise: nil)
default:
    fatalError("unknown transport \(transport)")
}
let elapsed = clock.now - start
let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
precondition(received == byteCount, "\(transport): received \(received) of \(byteCount) bytes")
print("\(transport) \(received) \(String(format: "%.3f", seconds)) \(String(format: "%.0f", Double(received) / seconds / 1e6))")
