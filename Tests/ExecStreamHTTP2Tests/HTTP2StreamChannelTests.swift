import ExecStreamHTTP2
import NIOCore
import NIOEmbedded
import Testing

@Suite("An HTTP/2 stream as a NIO channel of bytes, against an nghttp2 client", .timeLimit(.minutes(1)))
struct HTTP2StreamChannelTests {
    /// What the pipeline saw.
    enum Event: Equatable, Sendable {
        case read([UInt8])
        case writable(Bool)
        case inactive
    }

    /// Records every inbound event; echoes what it reads if asked to.
    final class Recorder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let events: AsyncStream<Event>.Continuation
        let echo: Bool

        init(_ events: AsyncStream<Event>.Continuation, echo: Bool = false) {
            self.events = events
            self.echo = echo
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = self.unwrapInboundIn(data)
            if self.echo {
                context.writeAndFlush(self.wrapOutboundOut(bytes), promise: nil)
            }
            self.events.yield(.read(Array(bytes.readableBytesView)))
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            self.events.yield(.writable(context.channel.isWritable))
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.events.yield(.inactive)
        }
    }

    /// Answers the stream 200 and serves it as a channel with `recorder` (and `autoRead`).
    private func serve(_ stream: HTTP2ServerStream, _ recorder: @escaping @Sendable () -> Recorder, autoRead: Bool = true) async throws -> HTTP2StreamChannel {
        try await stream.eventLoop.submit {
            stream.sendResponseHead(status: 200)
            return try HTTP2StreamChannel.serve(stream) { channel in
                try channel.syncOptions!.setOption(.autoRead, value: autoRead)
                try channel.pipeline.syncOperations.addHandler(recorder())
            }.get()
        }.get()
    }

    @Test("bytes go both ways through the pipeline; END_STREAM from the peer closes the channel, which ends the response")
    func echoThenEndOfStream() async throws {
        let harness = try await HTTP2Harness()
        let id = harness.client.request(method: "CONNECT", path: "/echo", extendedConnectProtocol: "websocket", body: Array("ping".utf8), endStream: false)
        try await harness.exchange()
        let stream = await harness.nextStream()
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        var received = events.makeAsyncIterator()
        let channel = try await self.serve(stream, { Recorder(continuation, echo: true) })
        #expect(await received.next() == .read(Array("ping".utf8)))
        try await harness.exchange()
        #expect(harness.client.streams[id]?.status == "200")
        #expect(harness.client.streams[id]?.body == Array("ping".utf8))

        harness.client.sendBody([], on: id, endStream: true)
        try await harness.exchange()
        #expect(await received.next() == .inactive)
        try await channel.closeFuture.get()
        #expect(!channel.isActive)
        try await harness.exchange()
        #expect(harness.client.streams[id]?.ended == true, "closing the channel sent END_STREAM")
        #expect(try await stream.closeFuture.get() == .finished)
    }

    @Test("a reset from the peer makes the channel inactive at once")
    func peerReset() async throws {
        let harness = try await HTTP2Harness()
        let id = harness.client.request(method: "CONNECT", path: "/x", extendedConnectProtocol: "websocket", endStream: false)
        try await harness.exchange()
        let stream = await harness.nextStream()
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        var received = events.makeAsyncIterator()
        let channel = try await self.serve(stream, { Recorder(continuation) })
        harness.client.resetStream(id, code: 0x8)
        try await harness.exchange()
        #expect(await received.next() == .inactive)
        try await channel.closeFuture.get()
        #expect(try await stream.closeFuture.get() == .reset(0x8))
        let write = try await stream.eventLoop.submit { channel.writeAndFlush(ByteBuffer(string: "late")) }.get()
        await #expect(throws: ChannelError.self) { try await write.get() }
    }

    @Test("request bytes are taken (and the peer's window opened) only as the pipeline reads")
    func readDemandIsFlowControl() async throws {
        var configuration = HTTP2Configuration()
        configuration.streamWindowSize = 1024
        let harness = try await HTTP2Harness(configuration: configuration)
        let id = harness.client.request(method: "CONNECT", path: "/upload", extendedConnectProtocol: "websocket", body: [UInt8](repeating: 7, count: 8192))
        try await harness.exchange()
        let stream = await harness.nextStream()
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        var received = events.makeAsyncIterator()
        let channel = try await self.serve(stream, { Recorder(continuation) }, autoRead: false)
        try await harness.exchange()
        #expect(harness.client.streams[id]?.ended != true)

        // Reading on: every byte arrives, one window at a time, then the end of the request
        // closes the channel.
        try await channel.setOption(.autoRead, value: true).get()
        var total = 0
        while total < 8192 {
            guard case .read(let bytes) = await received.next() else {
                Issue.record("the channel closed after \(total) bytes")
                return
            }
            total += bytes.count
            try await harness.exchange()
        }
        #expect(total == 8192)
        #expect(await received.next() == .inactive)
    }

    @Test("the channel is not writable above the stream's high watermark, and writable again at its low one")
    func writabilityFollowsTheStream() async throws {
        var configuration = HTTP2Configuration()
        configuration.outboundHighWatermark = 4096
        configuration.outboundLowWatermark = 1024
        let client = NGHTTP2TestClient(windowSize: 2048, manualWindowUpdates: true)
        let harness = try await HTTP2Harness(configuration: configuration, client: client)
        let id = client.request(method: "CONNECT", path: "/download", extendedConnectProtocol: "websocket", endStream: false)
        try await harness.exchange()
        let stream = await harness.nextStream()
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        var received = events.makeAsyncIterator()
        let channel = try await self.serve(stream, { Recorder(continuation) })
        let writable = try await stream.eventLoop.submit { () -> [Bool] in
            (0..<4).map { _ in
                channel.writeAndFlush(ByteBuffer(repeating: 1, count: 2048), promise: nil)
                return channel.isWritable
            }
        }.get()
        #expect(writable == [true, true, true, false])
        #expect(await received.next() == .writable(false))
        try await harness.exchange()
        #expect(client.streams[id]?.body.count == 2048, "the client's window")
        for _ in 0..<3 {
            client.consume(2048, on: id)
            try await harness.exchange()
        }
        try await stream.eventLoop.submit {}.get()  // the stream's callback runs on the loop after its send loop
        #expect(await received.next() == .writable(true))
        #expect(channel.isWritable)
        #expect(client.streams[id]?.body.count == 8192)
    }
}
