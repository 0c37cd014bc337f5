import CNghttp2
public import ExecStreamCore
public import NIOCore
import NIOPosix

/// What a client stream receives, in order: the response head, body chunks, trailers.
public enum HTTP2ClientEvent: Hashable, Sendable {
    /// The response head.
    case head(status: Int, headers: [HTTP2ClientHeader])
    /// A chunk of the response body.
    case data(ByteBuffer)
    /// The trailers.
    case trailers([HTTP2ClientHeader])
}

/// One header field.
public struct HTTP2ClientHeader: Hashable, Sendable {
    /// The lower-case name.
    public var name: String
    /// The value.
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

extension Array where Element == HTTP2ClientHeader {
    /// The first value of `name`.
    public subscript(first name: String) -> String? {
        self.first { $0.name == name }?.value
    }
}

/// An HTTP/2 client connection (prior knowledge, over TCP or a unix socket) on nghttp2, used by
/// the CLI and the tests. One nghttp2 client session, owned by a handler on its event loop.
public final class HTTP2ClientConnection: Sendable {
    private let channel: any Channel
    private let handler: NIOLoopBound<HTTP2ClientHandler>
    /// The `:authority` requests carry.
    public let authority: String

    private init(channel: any Channel, handler: NIOLoopBound<HTTP2ClientHandler>, authority: String) {
        self.channel = channel
        self.handler = handler
        self.authority = authority
    }

    /// Connects to `address` (TCP or a unix socket), on `group` (NIO's shared one by default).
    /// `secure`, if given, adds handlers below HTTP/2 on the new channel (on its event loop): a
    /// TLS client handler negotiating `h2`, say.
    public static func connect(
        to address: ListenAddress,
        group: (any EventLoopGroup)? = nil,
        secure: (@Sendable (ChannelPipeline.SynchronousOperations) throws -> Void)? = nil
    ) async throws -> HTTP2ClientConnection {
        let bootstrap = ClientBootstrap(group: group ?? MultiThreadedEventLoopGroup.singleton)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        let channel: any Channel
        let authority: String
        switch address {
        case .tcp(let host, let port):
            channel = try await bootstrap.connect(host: host, port: port).get()
            authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path):
            channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            authority = "localhost"
        case .vsock:
            throw HTTP2ClientError(message: "connecting over vsock is not supported by this client")
        }
        let handler = try await channel.eventLoop.submit {
            let handler = HTTP2ClientHandler()
            try secure?(channel.pipeline.syncOperations)
            try channel.pipeline.syncOperations.addHandler(handler)
            return NIOLoopBound(handler, eventLoop: channel.eventLoop)
        }.get()
        return HTTP2ClientConnection(channel: channel, handler: handler, authority: authority)
    }

    /// Opens a request stream. With `endStream`, the request has no body.
    public func makeStream(method: String, path: String, headers: [HTTP2ClientHeader] = [], endStream: Bool = false) async throws
        -> HTTP2ClientStream
    {
        let handler = self.handler
        let authority = self.authority
        let (events, continuation) = AsyncThrowingStream<HTTP2ClientEvent, any Error>.makeStream()
        let id = try await self.channel.eventLoop.submit {
            try handler.value.open(
                method: method,
                path: path,
                authority: authority,
                headers: headers,
                endStream: endStream,
                events: continuation
            )
        }.get()
        return HTTP2ClientStream(id: id, handler: handler, events: events)
    }

    /// Closes the connection.
    public func close() async {
        try? await self.channel.close()
    }
}

/// One request stream of an `HTTP2ClientConnection`.
public final class HTTP2ClientStream: Sendable {
    /// The stream id.
    public let id: Int32
    private let handler: NIOLoopBound<HTTP2ClientHandler>
    private let events: AsyncThrowingStream<HTTP2ClientEvent, any Error>

    init(id: Int32, handler: NIOLoopBound<HTTP2ClientHandler>, events: AsyncThrowingStream<HTTP2ClientEvent, any Error>) {
        self.id = id
        self.handler = handler
        self.events = events
    }

    /// The response, event by event; each body chunk taken opens the server's window again.
    public var response: HTTP2ClientResponse {
        HTTP2ClientResponse(base: self.events, consumed: { [handler, id] count in
            handler.eventLoop.execute { handler.value.consume(count, on: id) }
        })
    }

    /// Sends request body bytes; suspends while more than 1 MiB is queued. Throws if the stream is gone.
    public func write(_ buffer: ByteBuffer) async throws {
        let handler = self.handler
        let id = self.id
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            handler.eventLoop.execute { handler.value.write(buffer, on: id, continuation: continuation) }
        }
    }

    /// Ends the request body (END_STREAM) after what was written.
    public func finish() {
        let handler = self.handler
        let id = self.id
        handler.eventLoop.execute { handler.value.finish(id) }
    }

    /// Resets the stream (RST_STREAM CANCEL).
    public func reset() {
        let handler = self.handler
        let id = self.id
        handler.eventLoop.execute { handler.value.reset(id) }
    }
}

/// A response as an async sequence of events.
public struct HTTP2ClientResponse: AsyncSequence, Sendable {
    public typealias Element = HTTP2ClientEvent

    let base: AsyncThrowingStream<HTTP2ClientEvent, any Error>
    let consumed: @Sendable (Int) -> Void

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: self.base.makeAsyncIterator(), consumed: self.consumed)
    }

    /// Iterates the events, acknowledging body bytes as they are taken, in batches: one hop to the
    /// event loop per 256 KiB rather than per chunk (the stream window is 4 MiB, so a batch held
    /// back never stalls the server).
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<HTTP2ClientEvent, any Error>.AsyncIterator
        let consumed: @Sendable (Int) -> Void
        var unacknowledged = 0

        init(base: AsyncThrowingStream<HTTP2ClientEvent, any Error>.AsyncIterator, consumed: @escaping @Sendable (Int) -> Void) {
            self.base = base
            self.consumed = consumed
        }

        public mutating func next() async throws -> HTTP2ClientEvent? {
            let event = try await self.base.next()
            switch event {
            case .data(let chunk)?:
                self.unacknowledged += chunk.readableBytes
                if self.unacknowledged >= 256 << 10 {
                    self.consumed(self.unacknowledged)
                    self.unacknowledged = 0
                }
            case .head?, .trailers?, nil:
                if self.unacknowledged > 0 {
                    self.consumed(self.unacknowledged)
                    self.unacknowledged = 0
                }
            }
            return event
        }
    }
}

/// An error of the client connection.
public struct HTTP2ClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong.
    public var message: String
    /// The HTTP/2 error code, if a stream was reset.
    public var http2ErrorCode: UInt32?

    public var description: String { self.message }
}

/// The nghttp2 client session and its streams; every method runs on the channel's event loop.
final class HTTP2ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Stream {
        var events: AsyncThrowingStream<HTTP2ClientEvent, any Error>.Continuation
        var headers: [HTTP2ClientHeader] = []
        var headReceived = false
        var outbound: [UInt8] = []
        var outboundEnded = false
        var writers: [CheckedContinuation<Void, any Error>] = []
    }

    /// Writers suspend above this many queued request bytes.
    private static let writeHighWatermark = 1 << 20
    /// The window the client opens for each response; bytes are acknowledged as they are taken.
    private static let streamWindow: UInt32 = 4 << 20

    private var session: OpaquePointer?
    private var context: ChannelHandlerContext?
    private var streams: [Int32: Stream] = [:]
    private var closedError: HTTP2ClientError?
    /// The buffer being fed to nghttp2, and its base address, while `mem_recv` runs.
    private var receiving: (buffer: ByteBuffer, base: UnsafeRawPointer)?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks, clientHeaderCallback)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, clientFrameCallback)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, clientDataCallback)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, clientStreamCloseCallback)
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_session_client_new2(&self.session, callbacks, Unmanaged.passUnretained(self).toOpaque(), option)
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: Self.streamWindow),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        nghttp2_submit_settings(self.session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        nghttp2_session_set_local_window_size(self.session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, 64 << 20)
        self.flush()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.failAll(HTTP2ClientError(message: "the connection closed"))
        nghttp2_session_del(self.session)
        self.session = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.failAll(HTTP2ClientError(message: "the connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.failAll(HTTP2ClientError(message: TLSFailure.describe(error) ?? "connection error: \(error)"))
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        guard let session = self.session else { return }
        let result = buffer.withUnsafeReadableBytes { bytes in
            // While nghttp2 reads, DATA payloads point into `buffer`: they are sliced, not copied.
            self.receiving = (buffer, UnsafeRawPointer(bytes.baseAddress!))
            defer { self.receiving = nil }
            return nghttp2_session_mem_recv(session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count)
        }
        if result < 0 {
            self.failAll(HTTP2ClientError(message: "HTTP/2 protocol error: \(String(cString: nghttp2_strerror(Int32(result))))"))
            context.close(promise: nil)
            return
        }
        self.flush()
    }

    // MARK: Streams

    func open(
        method: String,
        path: String,
        authority: String,
        headers: [HTTP2ClientHeader],
        endStream: Bool,
        events: AsyncThrowingStream<HTTP2ClientEvent, any Error>.Continuation
    ) throws -> Int32 {
        if let closedError { throw closedError }
        guard let session = self.session else { throw HTTP2ClientError(message: "the connection closed") }
        let fields = [("method", method), ("scheme", "http"), ("authority", authority), ("path", path)].map { (":" + $0.0, $0.1) }
            + headers.map { ($0.name, $0.value) }
        var provider = nghttp2_data_provider()
        provider.read_callback = clientReadCallback
        let id = withNameValuePairs(fields) { nva, count in
            endStream
                ? nghttp2_submit_request(session, nil, nva, count, nil, nil)
                : nghttp2_submit_request(session, nil, nva, count, &provider, nil)
        }
        guard id > 0 else { throw HTTP2ClientError(message: "cannot open a stream: \(String(cString: nghttp2_strerror(id)))") }
        self.streams[id] = Stream(events: events)
        self.flush()
        return id
    }

    func write(_ buffer: ByteBuffer, on id: Int32, continuation: CheckedContinuation<Void, any Error>) {
        guard self.streams[id] != nil, !self.streams[id]!.outboundEnded else {
            continuation.resume(throwing: self.closedError ?? HTTP2ClientError(message: "the stream is closed"))
            return
        }
        self.streams[id]!.outbound.append(contentsOf: buffer.readableBytesView)
        if self.streams[id]!.outbound.count > Self.writeHighWatermark {
            self.streams[id]!.writers.append(continuation)
        } else {
            continuation.resume()
        }
        nghttp2_session_resume_data(self.session, id)
        self.flush()
    }

    func finish(_ id: Int32) {
        guard self.streams[id] != nil else { return }
        self.streams[id]!.outboundEnded = true
        nghttp2_session_resume_data(self.session, id)
        self.flush()
    }

    func reset(_ id: Int32) {
        guard self.session != nil, self.streams[id] != nil else { return }
        nghttp2_submit_rst_stream(self.session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, 0x8)
        self.flush()
    }

    func consume(_ count: Int, on id: Int32) {
        guard let session = self.session else { return }
        nghttp2_session_consume(session, id, count)
        self.flush()
    }

    private func flush() {
        guard let session = self.session, let context = self.context else { return }
        var wrote = false
        while true {
            var data: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(session, &data)
            guard count > 0, let data else { break }
            context.write(self.wrapOutboundOut(ByteBuffer(bytes: UnsafeRawBufferPointer(start: data, count: count))), promise: nil)
            wrote = true
        }
        if wrote {
            context.flush()
        }
    }

    private func failAll(_ error: HTTP2ClientError) {
        self.closedError = self.closedError ?? error
        let streams = self.streams
        self.streams = [:]
        for stream in streams.values {
            stream.events.finish(throwing: error)
            for writer in stream.writers {
                writer.resume(throwing: error)
            }
        }
    }

    // MARK: nghttp2 callbacks

    fileprivate func onHeader(streamID: Int32, name: String, value: String) {
        self.streams[streamID]?.headers.append(HTTP2ClientHeader(name, value))
    }

    fileprivate func onHeadersComplete(streamID: Int32, endStream: Bool) {
        guard var stream = self.streams[streamID] else { return }
        let headers = stream.headers
        stream.headers = []
        if !stream.headReceived {
            let status = headers[first: ":status"].flatMap { Int($0) } ?? 0
            if (100..<200).contains(status) {
                // An informational head: the real one follows.
                self.streams[streamID] = stream
                return
            }
            stream.headReceived = true
            stream.events.yield(.head(status: status, headers: headers.filter { !$0.name.hasPrefix(":") }))
        } else {
            stream.events.yield(.trailers(headers))
        }
        self.streams[streamID] = stream
        if endStream {
            stream.events.finish()
        }
    }

    fileprivate func onData(streamID: Int32, bytes: UnsafeRawBufferPointer, endStream: Bool) {
        guard let stream = self.streams[streamID] else { return }
        if let receiving = self.receiving, let base = bytes.baseAddress, base >= receiving.base,
            base + bytes.count <= receiving.base + receiving.buffer.readableBytes
        {
            let offset = base - receiving.base
            stream.events.yield(.data(receiving.buffer.getSlice(at: receiving.buffer.readerIndex + offset, length: bytes.count)!))
        } else {
            stream.events.yield(.data(ByteBuffer(bytes: bytes)))
        }
    }

    fileprivate func onEndStream(streamID: Int32) {
        self.streams[streamID]?.events.finish()
    }

    fileprivate func onStreamClose(streamID: Int32, errorCode: UInt32) {
        guard let stream = self.streams.removeValue(forKey: streamID) else { return }
        if errorCode == 0 {
            stream.events.finish()
        } else {
            stream.events.finish(throwing: HTTP2ClientError(message: "the server reset the stream (HTTP/2 error \(errorCode))", http2ErrorCode: errorCode))
        }
        for writer in stream.writers {
            writer.resume(throwing: HTTP2ClientError(message: "the stream is closed"))
        }
    }

    fileprivate func readBody(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, maxLength: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard var stream = self.streams[streamID] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let count = min(maxLength, stream.outbound.count)
        if count > 0 {
            stream.outbound.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: count) }
            stream.outbound.removeFirst(count)
        }
        var released: [CheckedContinuation<Void, any Error>] = []
        if stream.outbound.count <= Self.writeHighWatermark / 2 {
            released = stream.writers
            stream.writers = []
        }
        let ended = stream.outbound.isEmpty && stream.outboundEnded
        self.streams[streamID] = stream
        released.forEach { $0.resume() }
        if ended {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return count
        }
        return count > 0 ? count : Int(NGHTTP2_ERR_DEFERRED.rawValue)
    }
}

private func clientHandler(_ userData: UnsafeMutableRawPointer?) -> HTTP2ClientHandler {
    Unmanaged<HTTP2ClientHandler>.fromOpaque(userData!).takeUnretainedValue()
}

private let clientHeaderCallback: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    clientHandler(userData).onHeader(
        streamID: frame!.pointee.hd.stream_id,
        name: String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self),
        value: String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self)
    )
    return 0
}

private let clientFrameCallback: nghttp2_on_frame_recv_callback = { _, frame, userData in
    let header = frame!.pointee.hd
    let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
    switch UInt32(header.type) {
    case NGHTTP2_HEADERS.rawValue:
        clientHandler(userData).onHeadersComplete(streamID: header.stream_id, endStream: endStream)
    case NGHTTP2_DATA.rawValue where endStream:
        clientHandler(userData).onEndStream(streamID: header.stream_id)
    default:
        break
    }
    return 0
}

private let clientDataCallback: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, userData in
    clientHandler(userData).onData(streamID: streamID, bytes: UnsafeRawBufferPointer(start: data, count: length), endStream: false)
    return 0
}

private let clientStreamCloseCallback: nghttp2_on_stream_close_callback = { _, streamID, errorCode, userData in
    clientHandler(userData).onStreamClose(streamID: streamID, errorCode: errorCode)
    return 0
}

private let clientReadCallback: nghttp2_data_source_read_callback = { _, streamID, buffer, length, flags, _, userData in
    return clientHandler(userData).readBody(streamID: streamID, into: buffer!, maxLength: length, flags: flags!)
}

/// The TLS failures a person can act on, in words instead of BoringSSL's reason codes (the TLS
/// handler below this one reports them as errors whose text holds those codes).
enum TLSFailure {
    private static let reasons: [(code: String, sentence: String)] = [
        ("CERTIFICATE_REQUIRED", "the server requires a client certificate (--tls-cert and --tls-key)"),
        ("UNKNOWN_CA", "the server does not accept this client certificate: its CA is not the server's client CA"),
        ("BAD_CERTIFICATE", "the server does not accept this client certificate"),
        ("CERTIFICATE_VERIFY_FAILED", "the server's certificate is not trusted (--tls-ca names the CA that signed it)"),
        ("failedToValidateHostname", "the server's certificate does not carry the name connected to (--tls-server-name)"),
        ("WRONG_VERSION_NUMBER", "the server did not answer in TLS: is this a plain listener?"),
    ]

    static func describe(_ error: any Error) -> String? {
        let text = "\(error)"
        return Self.reasons.first { text.contains($0.code) }.map { "TLS: \($0.sentence)" }
    }
}
