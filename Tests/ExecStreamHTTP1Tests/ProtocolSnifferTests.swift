import ExecStreamHTTP1
import NIOCore
import NIOEmbedded
import Testing

/// Records what reached the handler installed after the sniffer.
private final class Recorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var received = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.received.writeBuffer(&buffer)
    }
}

@Suite("Protocol sniffer")
struct ProtocolSnifferTests {
    /// A channel with a sniffer that installs a recorder and reports what it detected.
    private func sniffingChannel() throws -> (EmbeddedChannel, Recorder, () -> ProtocolSniffer.Detected?) {
        let channel = EmbeddedChannel()
        let recorder = Recorder()
        var detected: ProtocolSniffer.Detected?
        try channel.pipeline.syncOperations.addHandler(
            ProtocolSniffer(timeout: .seconds(5)) { protocolKind, context in
                detected = protocolKind
                try context.pipeline.syncOperations.addHandler(recorder)
            }
        )
        return (channel, recorder, { detected })
    }

    @Test("the HTTP/2 preface, split anywhere, selects HTTP/2 and every byte is passed on")
    func http2Preface() throws {
        let bytes = ProtocolSniffer.http2Preface + [0, 0, 0, 4, 0, 0, 0, 0, 0]
        for split in 1..<ProtocolSniffer.http2Preface.count {
            let (channel, recorder, detected) = try self.sniffingChannel()
            try channel.writeInbound(ByteBuffer(bytes: bytes[..<split]))
            #expect(detected() == nil, "a prefix of the preface decides nothing")
            try channel.writeInbound(ByteBuffer(bytes: bytes[split...]))
            #expect(detected() == .http2)
            #expect(Array(recorder.received.readableBytesView) == bytes)
            _ = try channel.finish()
        }
    }

    @Test("anything else is HTTP/1, decided at the first differing byte")
    func http1() throws {
        let (channel, recorder, detected) = try self.sniffingChannel()
        try channel.writeInbound(ByteBuffer(string: "GET /healthz HTTP/1.1\r\n"))
        #expect(detected() == .http1)
        #expect(String(buffer: recorder.received) == "GET /healthz HTTP/1.1\r\n")
        _ = try channel.finish()
    }

    @Test("a mangled preface gets an HTTP/1.1 400 and a close, not an HTTP/1 parser")
    func mangledPreface() throws {
        let (channel, _, detected) = try self.sniffingChannel()
        try channel.writeInbound(ByteBuffer(string: "PRI * HTTP/2.0\r\n\r\nXX"))
        #expect(detected() == nil)
        let response = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: response).hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(!channel.isActive)
    }

    @Test("a connection that says nothing decisive is closed at the timeout")
    func timeout() throws {
        let (channel, _, detected) = try self.sniffingChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(string: "PRI *"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
        #expect(detected() == nil)
    }
}
