import ExecStreamHTTP2
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@Suite("HTTP/2 server connection handler, against an nghttp2 client", .timeLimit(.minutes(1)))
struct HTTP2ServerConnectionHandlerTests {
    @Test("a request reaches the application; the response carries a body and trailers")
    func requestAndResponseWithTrailers() async throws {
        let harness = try await HTTP2Harness()
        let id = harness.client.request(method: "POST", path: "/echo?x=1", headers: [("x-test", "yes")], body: Array("ping".utf8))
        try await harness.exchange()
        let stream = await harness.nextStream()
        #expect(stream.head.method == "POST")
        #expect(stream.head.path == "/echo?x=1")
        #expect(stream.head.pathWithoutQuery == "/echo")
        #expect(stream.head.headers[first: "x-test"] == "yes")
        var body: [UInt8] = []
        for try await chunk in stream.requestBody {
            body += chunk.readableBytesView
        }
        #expect(body == Array("ping".utf8))
        stream.sendResponseHead(status: 200, headers: ["content-type": "text/plain"])
        try await stream.write(ByteBuffer(string: "pong"))
        stream.finish(trailers: ["x-done": "yes"])
        try await harness.exchange()
        let record = try #require(harness.client.streams[id])
        #expect(record.status == "200")
        #expect(record.body == Array("pong".utf8))
        #expect(record.trailers.map { "\($0.0)=\($0.1)" } == ["x-done=yes"])
        #expect(try await stream.closeFuture.get() == .finished)
    }

    @Test("request bytes are acknowledged to the peer only as the application consumes them")
    func inboundFlowControl() async throws {
        var configuration = HTTP2Configuration()
        configuration.streamWindowSize = 1024
        let harness = try await HTTP2Harness(configuration: configuration)
        let id = harness.client.request(method: "POST", path: "/upload", body: [UInt8](repeating: 7, count: 8192))
        try await harness.exchange()
        let stream = await harness.nextStream()
        // Nothing consumed yet: the client has used up exactly one stream window.
        #expect(harness.client.streams[id] == nil || harness.client.streams[id]?.ended == false)
        var iterator = stream.requestBody.makeAsyncIterator()
        var received = 0
        while received < 8192 {
            let chunk = try #require(try await iterator.next())
            received += chunk.readableBytes
            try await harness.exchange()  // the window update goes out, more data comes in
        }
        #expect(try await iterator.next() == nil)
        #expect(received == 8192)
    }

    @Test("a producer on the loop is told to wait above the high watermark and resumed at the low one")
    func outboundBackpressureOnTheLoop() async throws {
        var configuration = HTTP2Configuration()
        configuration.outboundHighWatermark = 4096
        configuration.outboundLowWatermark = 1024
        let client = NGHTTP2TestClient(windowSize: 2048, manualWindowUpdates: true)
        let harness = try await HTTP2Harness(configuration: configuration, client: client)
        let id = client.request(path: "/download")
        try await harness.exchange()
        let stream = await harness.nextStream()
        let loop = stream.eventLoop
        let results = try await loop.submit { () -> [HTTP2WriteResult] in
            stream.sendResponseHead(status: 200)
            return (0..<4).map { _ in stream.writeOnEventLoop(ByteBuffer(repeating: 1, count: 2048)) }
        }.get()
        // The first 2 KiB leaves at once (the client's window); 6 KiB queued is above 4 KiB.
        #expect(results == [.writable, .writable, .writable, .aboveHighWatermark])
        try await harness.exchange()
        #expect(client.streams[id]?.body.count == 2048)

        // The producer resumes only once the queue is down to the 1 KiB low watermark.
        let resumed = Mutex(false)
        try await loop.submit { stream.whenWritable { resumed.withLock { $0 = true } } }.get()
        for sent in [4096, 6144] {
            client.consume(2048, on: id)
            try await harness.exchange()
            #expect(client.streams[id]?.body.count == sent)
            #expect(!resumed.withLock { $0 }, "\(8192 - sent) bytes still queued: above the low watermark")
        }
        client.consume(2048, on: id)
        try await harness.exchange()
        try await loop.submit {}.get()  // the callback runs on the loop after the send loop
        #expect(resumed.withLock { $0 })
        #expect(client.streams[id]?.body.count == 8192)
        #expect(try await loop.submit { stream.writeOnEventLoop(ByteBuffer()) }.get() == .writable)
    }

    @Test("an async writer gets every byte through a small window, in order")
    func asyncWritesThroughASmallWindow() async throws {
        var configuration = HTTP2Configuration()
        configuration.outboundHighWatermark = 4096
        configuration.outboundLowWatermark = 1024
        let client = NGHTTP2TestClient(windowSize: 1000)
        let harness = try await HTTP2Harness(configuration: configuration, client: client)
        let id = client.request(path: "/download")
        try await harness.exchange()
        let stream = await harness.nextStream()
        let expected = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let writer = Task {
            stream.sendResponseHead(status: 200)
            for offset in stride(from: 0, to: expected.count, by: 3000) {
                try await stream.write(ByteBuffer(bytes: expected[offset..<min(offset + 3000, expected.count)]))
            }
            stream.finish()
        }
        while client.streams[id]?.ended != true {
            try await harness.exchange()
            await Task.yield()
        }
        try await writer.value
        #expect(client.streams[id]?.body == expected)
    }

    @Test("a send loop yields at its byte budget and continues on the next iteration, losing nothing")
    func sendLoopBudget() async throws {
        var configuration = HTTP2Configuration()
        configuration.maxDataBytesPerSendLoop = 4096
        configuration.outboundHighWatermark = 1 << 20
        let client = NGHTTP2TestClient(windowSize: 1 << 20)
        let harness = try await HTTP2Harness(configuration: configuration, client: client)
        let id = client.request(path: "/download")
        try await harness.exchange()
        let stream = await harness.nextStream()
        let expected = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let result = try await stream.eventLoop.submit { () -> HTTP2WriteResult in
            stream.sendResponseHead(status: 200)
            let result = stream.writeOnEventLoop(ByteBuffer(bytes: expected))
            stream.finish()
            return result
        }.get()
        #expect(result == .writable)
        // 200 KB at 4 KiB per send loop: dozens of continuations, each on a later loop turn.
        while client.streams[id]?.ended != true {
            try await harness.exchange()
            try await stream.eventLoop.submit {}.get()
        }
        #expect(client.streams[id]?.body == expected)
    }

    @Test("a reset from the peer fails the request body and completes closeFuture with the code")
    func peerReset() async throws {
        let harness = try await HTTP2Harness()
        let id = harness.client.request(method: "POST", path: "/long", body: [1, 2, 3], endStream: false)
        try await harness.exchange()
        let stream = await harness.nextStream()
        harness.client.resetStream(id, code: 0x8)
        try await harness.exchange()
        #expect(try await stream.closeFuture.get() == .reset(0x8))
        var iterator = stream.requestBody.makeAsyncIterator()
        #expect(try await iterator.next()?.readableBytes == 3, "bytes that arrived before the reset are kept")
        let error = await #expect(throws: HTTP2TransportError.self) { _ = try await iterator.next() }
        #expect(error?.code == .streamReset)
        #expect(error?.http2ErrorCode == 0x8)
    }

    @Test("extended CONNECT (RFC 8441): :protocol reaches the application")
    func extendedConnect() async throws {
        let harness = try await HTTP2Harness()
        harness.client.request(method: "CONNECT", path: "/exec/token", extendedConnectProtocol: "websocket", endStream: false)
        try await harness.exchange()
        let stream = await harness.nextStream()
        #expect(stream.head.method == "CONNECT")
        #expect(stream.head.extendedConnectProtocol == "websocket")
        #expect(stream.head.path == "/exec/token")
    }

    @Test("a header list over the limit gets 431 and never reaches the application")
    func oversizedHeaders() async throws {
        var configuration = HTTP2Configuration()
        configuration.maxHeaderListSize = 256
        let harness = try await HTTP2Harness(configuration: configuration)
        let big = harness.client.request(path: "/a", headers: [("x-big", String(repeating: "b", count: 400))])
        let small = harness.client.request(path: "/b")
        try await harness.exchange()
        #expect(harness.client.streams[big]?.status == "431")
        let stream = await harness.nextStream()
        #expect(stream.head.path == "/b", "the next request is served normally")
        stream.sendResponseHead(status: 204, endStream: true)
        try await harness.exchange()
        #expect(harness.client.streams[small]?.status == "204")
    }

    @Test("keepalive: a PING after the quiet interval; an unanswered one closes the connection")
    func keepaliveTimeout() async throws {
        var configuration = HTTP2Configuration()
        configuration.keepaliveInterval = .seconds(10)
        configuration.keepaliveTimeout = .seconds(5)
        let client = NGHTTP2TestClient(answerPings: false)
        let harness = try await HTTP2Harness(configuration: configuration, client: client)
        try await harness.advanceTime(by: .seconds(9))
        #expect(client.receivedPings == 0)
        try await harness.advanceTime(by: .seconds(1))
        #expect(client.receivedPings == 1)
        try await harness.advanceTime(by: .seconds(4))
        #expect(harness.isOpen)
        try await harness.advanceTime(by: .seconds(1))
        #expect(!harness.isOpen)
    }

    @Test("keepalive: an answered PING keeps the connection open")
    func keepaliveAnswered() async throws {
        var configuration = HTTP2Configuration()
        configuration.keepaliveInterval = .seconds(10)
        configuration.keepaliveTimeout = .seconds(5)
        let harness = try await HTTP2Harness(configuration: configuration)
        var pings = 0
        for _ in 1...6 {
            try await harness.advanceTime(by: .seconds(11))
            #expect(harness.client.receivedPings > pings, "a PING in every quiet interval")
            pings = harness.client.receivedPings
            #expect(harness.isOpen)
        }
    }

    @Test("idle timeout: with no stream for the interval, GOAWAY and close")
    func idleTimeout() async throws {
        var configuration = HTTP2Configuration()
        configuration.idleTimeout = .seconds(30)
        configuration.keepaliveInterval = .hours(1)
        let harness = try await HTTP2Harness(configuration: configuration)
        let id = harness.client.request(path: "/x", endStream: false)
        try await harness.exchange()
        let stream = await harness.nextStream()
        try await harness.advanceTime(by: .seconds(60))
        #expect(harness.isOpen, "an open stream keeps the connection")
        stream.sendResponseHead(status: 200, endStream: true)
        harness.client.sendBody([], on: id, endStream: true)
        try await harness.exchange()
        try await harness.advanceTime(by: .seconds(29))
        #expect(harness.isOpen)
        try await harness.advanceTime(by: .seconds(1))
        #expect(harness.client.goAwayErrorCode == 0)
        #expect(!harness.isOpen)
    }

    @Test("graceful shutdown: GOAWAY, the open stream finishes, then the connection closes")
    func gracefulShutdown() async throws {
        let harness = try await HTTP2Harness()
        let id = harness.client.request(path: "/slow")
        try await harness.exchange()
        let stream = await harness.nextStream()
        harness.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        try await harness.exchange()
        #expect(harness.client.goAwayErrorCode == 0)
        #expect(harness.isOpen, "the stream in flight is allowed to finish")
        stream.sendResponseHead(status: 200)
        try await stream.write(ByteBuffer(string: "done"))
        stream.finish()
        try await harness.exchange()
        #expect(harness.client.streams[id]?.body == Array("done".utf8))
        #expect(!harness.isOpen)
    }

    @Test("a response head nghttp2 cannot send resets the stream at once; the connection lives on", arguments: [false, true])
    func oversizedResponseHeadResetsTheStream(asTrailers: Bool) async throws {
        let harness = try await HTTP2Harness()
        let id = harness.client.request(path: "/big")
        try await harness.exchange()
        let stream = await harness.nextStream()
        // Over nghttp2's 64 KiB limit on a header block it sends.
        let huge: HTTP2Headers = ["x-huge": String(repeating: "a", count: 200_000)]
        if asTrailers {
            stream.sendResponseHead(status: 200)
            try await stream.write(ByteBuffer(string: "partial"))
            stream.finish(trailers: huge)
        } else {
            stream.sendResponseHead(status: 200, headers: huge, endStream: true)
        }
        try await harness.exchange()
        try #require(harness.client.streams[id]?.closedWithError == 0x2, "INTERNAL_ERROR, not silence")
        #expect(try await stream.closeFuture.get() == .reset(0x2))
        #expect(harness.isOpen)

        let next = harness.client.request(path: "/next")
        try await harness.exchange()
        let nextStream = await harness.nextStream()
        nextStream.sendResponseHead(status: 204, endStream: true)
        try await harness.exchange()
        #expect(harness.client.streams[next]?.status == "204")
    }

    @Test("a response that ends while the request is still open is followed by RST_STREAM NO_ERROR (stop sending)")
    func earlyResponseTellsTheClientToStopSending() async throws {
        let harness = try await HTTP2Harness()
        let open = harness.client.request(method: "POST", path: "/refused", body: Array("partial".utf8), endStream: false)
        try await harness.exchange()
        let stream = await harness.nextStream()
        stream.sendResponseHead(status: 200, headers: ["grpc-status": "7"], endStream: true)
        try await harness.exchange()
        let record = try #require(harness.client.streams[open])
        #expect(record.status == "200" && record.ended, "the whole response arrives first")
        #expect(record.resetByServer == 0)
        #expect(try await stream.closeFuture.get() == .finished)

        // A request that had ended gets its response and no reset.
        let whole = harness.client.request(method: "POST", path: "/whole", body: Array("all".utf8))
        try await harness.exchange()
        let next = await harness.nextStream()
        next.sendResponseHead(status: 204, endStream: true)
        try await harness.exchange()
        #expect(harness.client.streams[whole]?.status == "204")
        #expect(harness.client.streams[whole]?.resetByServer == nil)
    }
}
