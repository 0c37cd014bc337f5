public import NIOCore

/// What a producer on the event loop may do after a write.
public enum HTTP2WriteResult: Hashable, Sendable {
    /// The bytes are queued; write more.
    case writable
    /// The bytes are queued, and the queue is above its high watermark: wait for `whenWritable`.
    case aboveHighWatermark
    /// The stream is closed (or has no response body open): nothing was queued; stop producing.
    case closed
}

/// How a stream ended.
public enum HTTP2StreamCloseReason: Hashable, Sendable {
    /// Both sides ended the stream normally.
    case finished
    /// The stream was reset with this HTTP/2 error code (by the peer or by us).
    case reset(UInt32)
    /// The connection went away first.
    case connectionClosed
}

/// One request stream, as an application (gRPC, a streaming endpoint) sees it.
///
/// Every method may be called from any task: work hops to the connection's event loop. The
/// request body is acknowledged to the peer (`nghttp2_session_consume`, so WINDOW_UPDATE) only as
/// the application takes it from `requestBody`; the peer can therefore never have more than one
/// stream window in flight. Writes suspend while more than the outbound high watermark is queued.
public final class HTTP2ServerStream: Sendable {
    /// The HTTP/2 stream id.
    public let id: Int32
    /// The request head.
    public let head: HTTP2RequestHead
    /// The peer's address, if known.
    public let remoteAddress: SocketAddress?
    /// Our address, if known.
    public let localAddress: SocketAddress?
    /// The request body, chunk by chunk, ending at END_STREAM; it throws if the stream is reset.
    public let requestBody: HTTP2RequestBody
    /// Completes when the stream closes, with the reason.
    public let closeFuture: EventLoopFuture<HTTP2StreamCloseReason>

    /// The connection's event loop.
    public let eventLoop: any EventLoop
    private let connection: NIOLoopBound<HTTP2ServerConnectionHandler>

    init(
        id: Int32,
        head: HTTP2RequestHead,
        remoteAddress: SocketAddress?,
        localAddress: SocketAddress?,
        requestBody: HTTP2RequestBody,
        closeFuture: EventLoopFuture<HTTP2StreamCloseReason>,
        connection: NIOLoopBound<HTTP2ServerConnectionHandler>
    ) {
        self.id = id
        self.head = head
        self.remoteAddress = remoteAddress
        self.localAddress = localAddress
        self.requestBody = requestBody
        self.closeFuture = closeFuture
        self.eventLoop = connection.eventLoop
        self.connection = connection
    }

    /// Sends the response head. With `endStream`, the head is the whole response (a gRPC
    /// trailers-only response, a 404). Errors surface in later writes and in `closeFuture`.
    public func sendResponseHead(status: Int, headers: HTTP2Headers = HTTP2Headers(), endStream: Bool = false) {
        let connection = self.connection
        let id = self.id
        self.onLoop {
            connection.value.sendResponseHead(streamID: id, status: status, headers: headers, endStream: endStream)
        }
    }

    /// Queues `data` for the response body; suspends while the stream's outbound queue is above
    /// its high watermark. Throws if the stream is closed or was reset.
    public func write(_ data: ByteBuffer) async throws {
        try await self.write(contentsOf: [data])
    }

    /// Queues several buffers in order, in one hop to the event loop (a frame header and its
    /// payload, say); suspends as `write(_:)` does.
    public func write(contentsOf buffers: [ByteBuffer]) async throws {
        let connection = self.connection
        let id = self.id
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            self.eventLoop.execute {
                connection.value.write(streamID: id, buffers: buffers, continuation: continuation)
            }
        }
    }

    /// Ends the response, with trailers if given.
    public func finish(trailers: HTTP2Headers? = nil) {
        let connection = self.connection
        let id = self.id
        self.onLoop {
            connection.value.finish(streamID: id, trailers: trailers)
        }
    }

    /// Resets the stream with `code` (RST_STREAM).
    public func reset(code: UInt32 = HTTP2ErrorCode.cancel) {
        let connection = self.connection
        let id = self.id
        self.onLoop {
            connection.value.reset(streamID: id, code: code)
        }
    }

    // MARK: Producers on the event loop

    /// Queues `data` from a producer running on this stream's event loop, without suspending,
    /// and says whether the producer may go on (see `HTTP2WriteResult`).
    public func writeOnEventLoop(_ data: ByteBuffer) -> HTTP2WriteResult {
        self.writeOnEventLoop(contentsOf: [data])
    }

    /// Queues several buffers in order, then sends: a frame header and its payload leave in one
    /// DATA frame where the window allows.
    public func writeOnEventLoop(contentsOf buffers: [ByteBuffer]) -> HTTP2WriteResult {
        self.eventLoop.preconditionInEventLoop()
        return self.connection.value.writeOnLoop(streamID: self.id, buffers: buffers)
    }

    /// Calls `callback` once, on the event loop, when the queue has drained to the low watermark
    /// or the stream has closed (the next write then says `.closed`). At most one is registered.
    public func whenWritable(_ callback: @escaping () -> Void) {
        self.eventLoop.preconditionInEventLoop()
        self.connection.value.whenWritable(streamID: self.id, callback: callback)
    }

    private func onLoop(_ work: @escaping @Sendable () -> Void) {
        if self.eventLoop.inEventLoop {
            work()
        } else {
            self.eventLoop.execute(work)
        }
    }
}

/// A request body: an async sequence of chunks whose consumption opens the peer's flow-control
/// window again.
public struct HTTP2RequestBody: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    private let chunks: AsyncThrowingStream<ByteBuffer, any Error>
    private let consumed: @Sendable (Int) -> Void

    init(chunks: AsyncThrowingStream<ByteBuffer, any Error>, consumed: @escaping @Sendable (Int) -> Void) {
        self.chunks = chunks
        self.consumed = consumed
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: self.chunks.makeAsyncIterator(), consumed: self.consumed)
    }

    /// Iterates the chunks; each chunk taken is acknowledged to the peer.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator
        let consumed: @Sendable (Int) -> Void

        public mutating func next() async throws -> ByteBuffer? {
            guard let chunk = try await self.base.next() else { return nil }
            self.consumed(chunk.readableBytes)
            return chunk
        }
    }
}
