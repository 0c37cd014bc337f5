import ExecStreamHTTP2
import NIOCore
import NIOEmbedded
import Testing

/// The server handler on a testing channel, an nghttp2 client as its peer, and the streams the
/// handler hands to the application. `exchange()` moves bytes both ways until both are quiet.
final class HTTP2Harness {
    let channel = NIOAsyncTestingChannel()
    let client: NGHTTP2TestClient
    private var incoming: AsyncStream<HTTP2ServerStream>.AsyncIterator

    init(configuration: HTTP2Configuration = HTTP2Configuration(), client: NGHTTP2TestClient = NGHTTP2TestClient()) async throws {
        self.client = client
        let (streams, continuation) = AsyncStream.makeStream(of: HTTP2ServerStream.self)
        self.incoming = streams.makeAsyncIterator()
        try await self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).get()
        let channel = self.channel
        try await channel.testingEventLoop.executeInContext {
            // The handler is confined to its event loop: create and add it there.
            try channel.pipeline.syncOperations.addHandler(HTTP2ServerConnectionHandler(configuration: configuration) { continuation.yield($0) })
        }
        try await self.exchange()
    }

    /// Moves bytes until neither side has anything more to send.
    func exchange() async throws {
        while true {
            var moved = false
            while let bytes = try await self.channel.readOutbound(as: ByteBuffer.self) {
                self.client.receive(bytes)
                moved = true
            }
            let toServer = self.client.output()
            if toServer.readableBytes > 0, self.channel.isActive {
                try await self.channel.writeInbound(toServer)
                moved = true
            }
            if !moved {
                return
            }
        }
    }

    /// The next stream the handler gave the application.
    func nextStream() async -> HTTP2ServerStream {
        await self.incoming.next()!
    }

    var isOpen: Bool { self.channel.isActive }

    /// Advances virtual time in 100 ms steps, exchanging bytes after each: the client answers
    /// promptly, as a peer on a real network would, instead of after the whole interval.
    func advanceTime(by amount: TimeAmount) async throws {
        var remaining = amount
        while remaining > .zero {
            let step = min(remaining, .milliseconds(100))
            await self.channel.testingEventLoop.advanceTime(by: step)
            try await self.exchange()
            remaining = remaining - step
        }
    }
}
