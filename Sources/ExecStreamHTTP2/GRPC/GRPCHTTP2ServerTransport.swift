import ExecStreamCore
public import GRPCCore
public import NIOCore
import Synchronization

/// Limits of the gRPC transport.
public struct GRPCTransportConfiguration: Hashable, Sendable {
    /// The largest message either way: a larger request message ends the RPC with
    /// RESOURCE_EXHAUSTED, and responses are built to fit it (ExecSync trims its output).
    public var maxMessageBytes: Int

    /// 16 MiB, as CRI clients use.
    public init(maxMessageBytes: Int = 16 << 20) {
        self.maxMessageBytes = maxMessageBytes
    }
}

/// GRPCCore's `ServerTransport` on ExecStream's nghttp2 stack.
///
/// The transport does not own sockets: the server's listeners accept connections and route
/// request streams whose content type is `application/grpc…` here with `accept(_:)`. `listen`
/// runs every accepted RPC as a child task, so when `beginGracefulShutdown()` stops the intake,
/// `listen` returns only after the RPCs in flight have finished.
///
/// Per RPC it checks the request (POST, content type, identity encoding only, a valid path),
/// turns headers into metadata (`-bin` values base64-decoded), splits the body into messages
/// (at most `maxMessageBytes` each), frames responses, and ends with trailers, or with a
/// trailers-only response when nothing else was sent. A `grpc-timeout` ends the RPC with
/// DEADLINE_EXCEEDED and cancels its handler; a RST_STREAM from the client cancels it too.
public final class GRPCHTTP2ServerTransport: ServerTransport, Sendable {
    public typealias Bytes = GRPCMessageBytes

    private enum State {
        /// Accepting RPCs.
        case accepting
        /// Graceful shutdown began; new RPCs get UNAVAILABLE.
        case closed
    }

    private let configuration: GRPCTransportConfiguration
    /// A request stream, and what its connection knows about the peer (see `accept`).
    private typealias Accepted = (stream: HTTP2ServerStream, transportSpecific: (any ServerContext.TransportSpecific)?)

    private let intake: AsyncStream<Accepted>
    private let intakeContinuation: AsyncStream<Accepted>.Continuation
    private let state = Mutex(State.accepting)

    public init(configuration: GRPCTransportConfiguration = GRPCTransportConfiguration()) {
        self.configuration = configuration
        (self.intake, self.intakeContinuation) = AsyncStream.makeStream(of: Accepted.self)
    }

    public func listen(
        streamHandler: @escaping @Sendable (RPCStream<Inbound, Outbound>, ServerContext) async -> Void
    ) async throws {
        await withDiscardingTaskGroup { group in
            for await accepted in self.intake {
                group.addTask {
                    await self.serve(accepted.stream, transportSpecific: accepted.transportSpecific, handler: streamHandler)
                }
            }
        }
    }

    public func beginGracefulShutdown() {
        self.state.withLock { $0 = .closed }
        self.intakeContinuation.finish()
    }

    /// Hands a gRPC request stream to the transport. Call from anywhere. `transportSpecific`
    /// reaches the handler as `ServerContext.transportSpecific` (the peer's identity, say).
    public func accept(_ stream: HTTP2ServerStream, transportSpecific: (any ServerContext.TransportSpecific)? = nil) {
        let accepting = self.state.withLock { state -> Bool in
            switch state {
            case .accepting: return true
            case .closed: return false
            }
        }
        guard accepting, case .enqueued = self.intakeContinuation.yield((stream, transportSpecific)) else {
            Self.sendTrailersOnly(on: stream, status: Status(code: .unavailable, message: "the server is shutting down"))
            return
        }
    }

    /// Answers a gRPC request stream with `status` and nothing else: no handler runs.
    public func refuse(_ stream: HTTP2ServerStream, status: Status) {
        Self.sendTrailersOnly(on: stream, status: status)
    }

    // MARK: One RPC

    private func serve(
        _ stream: HTTP2ServerStream,
        transportSpecific: (any ServerContext.TransportSpecific)?,
        handler: @Sendable (RPCStream<Inbound, Outbound>, ServerContext) async -> Void
    ) async {
        let head = stream.head
        guard head.method == "POST" else {
            stream.sendResponseHead(status: 405, headers: ["allow": "POST"], endStream: true)
            return
        }
        guard let contentType = head.headers[first: "content-type"], contentType.hasPrefix("application/grpc") else {
            stream.sendResponseHead(status: 415, endStream: true)
            return
        }
        if let encoding = head.headers[first: "grpc-encoding"], encoding != "identity" {
            Self.sendTrailersOnly(
                on: stream,
                status: Status(code: .unimplemented, message: "message encoding '\(encoding)' is not supported"),
                extraHeaders: ["grpc-accept-encoding": "identity"]
            )
            return
        }
        guard let descriptor = Self.methodDescriptor(path: head.pathWithoutQuery ?? "") else {
            Self.sendTrailersOnly(on: stream, status: Status(code: .unimplemented, message: "invalid method path '\(head.path ?? "")'"))
            return
        }

        await withServerContextRPCCancellationHandle { cancellation in
            let writer = GRPCResponseWriter(stream: stream)
            stream.closeFuture.whenSuccess { reason in
                switch reason {
                case .finished:
                    break
                case .reset, .connectionClosed:
                    writer.abandon()
                    cancellation.cancel()
                }
            }
            var deadlineTimer: Scheduled<Void>?
            if let timeout = head.headers[first: "grpc-timeout"].flatMap(GRPCWire.parseTimeout) {
                deadlineTimer = stream.eventLoop.scheduleTask(in: timeout) {
                    writer.endEarly(Status(code: .deadlineExceeded, message: "deadline exceeded"))
                    cancellation.cancel()
                }
            }
            var context = ServerContext(
                descriptor: descriptor,
                remotePeer: Self.peerDescription(stream.remoteAddress),
                localPeer: Self.peerDescription(stream.localAddress),
                cancellation: cancellation
            )
            context.transportSpecific = transportSpecific
            let inbound = RPCAsyncSequence(
                wrapping: GRPCRequestParts(
                    metadata: Self.metadata(from: head.headers),
                    body: stream.requestBody,
                    maxMessageByteCount: self.configuration.maxMessageBytes
                )
            )
            await handler(RPCStream(descriptor: descriptor, inbound: inbound, outbound: RPCWriter.Closable(wrapping: writer)), context)
            deadlineTimer?.cancel()
            writer.endEarly(Status(code: .internalError, message: "the handler returned without a status"))
        }
    }

    /// `/package.Service/Method` → descriptor; nil for anything else.
    public static func methodDescriptor(path: String) -> MethodDescriptor? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty else { return nil }
        return MethodDescriptor(fullyQualifiedService: String(parts[1]), method: String(parts[2]))
    }

    /// Request headers as gRPC metadata: reserved and pseudo fields left out, `-bin` decoded.
    ///
    /// `grpc-timeout` is left out too: the transport enforces it (ending the RPC with
    /// DEADLINE_EXCEEDED, then cancelling the handler). Were it passed on, GRPCCore's executor
    /// would race us with its own timer, and a handler that returns when cancelled could end the
    /// RPC with OK first.
    static func metadata(from headers: HTTP2Headers) -> Metadata {
        var metadata = Metadata()
        for field in headers {
            switch field.name {
            case "content-type", "te", "grpc-encoding", "grpc-accept-encoding", "connection", "grpc-timeout":
                continue
            default:
                if field.name.hasSuffix("-bin") {
                    if let bytes = try? Base64.decode(Self.padded(field.value).utf8) {
                        metadata.addBinary(bytes, forKey: field.name)
                    }
                } else {
                    metadata.addString(field.value, forKey: field.name)
                }
            }
        }
        return metadata
    }

    /// gRPC senders may omit base64 padding; our decoder wants it.
    private static func padded(_ text: String) -> String {
        let remainder = text.utf8.count % 4
        return remainder == 0 ? text : text + String(repeating: "=", count: 4 - remainder)
    }

    /// Metadata as response header fields (`-bin` values base64-encoded without padding).
    static func headerFields(from metadata: Metadata) -> [HTTP2Headers.Field] {
        metadata.map { key, value in
            switch value {
            case .string(let text):
                return HTTP2Headers.Field(name: key.lowercased(), value: text)
            case .binary(let bytes):
                let encoded = String(decoding: Base64.encode(bytes), as: UTF8.self).trimmingTrailingPadding()
                return HTTP2Headers.Field(name: key.lowercased(), value: encoded)
            }
        }
    }

    static func statusFields(_ status: Status) -> [HTTP2Headers.Field] {
        var fields = [HTTP2Headers.Field(name: "grpc-status", value: String(status.code.rawValue))]
        if !status.message.isEmpty {
            fields.append(HTTP2Headers.Field(name: "grpc-message", value: GRPCWire.statusMessageField(status.message)))
        }
        return fields
    }

    static func sendTrailersOnly(on stream: HTTP2ServerStream, status: Status, extraHeaders: HTTP2Headers = HTTP2Headers(), metadata: Metadata = Metadata()) {
        var fields = [HTTP2Headers.Field(name: "content-type", value: "application/grpc")]
        fields += extraHeaders.fields
        fields += Self.statusFields(status)
        fields += Self.headerFields(from: metadata)
        stream.sendResponseHead(status: 200, headers: HTTP2Headers(fields), endStream: true)
    }

    public static func peerDescription(_ address: SocketAddress?) -> String {
        switch address {
        case .v4(let v4)?:
            return "ipv4:\(v4.host):\(address?.port ?? 0)"
        case .v6(let v6)?:
            return "ipv6:[\(v6.host)]:\(address?.port ?? 0)"
        case .unixDomainSocket?:
            return "unix:\(address?.pathname ?? "")"
        case nil:
            return "unknown"
        }
    }
}

extension String {
    fileprivate func trimmingTrailingPadding() -> String {
        var text = self
        while text.hasSuffix("=") {
            text.removeLast()
        }
        return text
    }
}

/// The request side of one RPC: its metadata first, then each message of the body.
struct GRPCRequestParts: AsyncSequence, Sendable {
    typealias Element = RPCRequestPart<GRPCMessageBytes>

    let metadata: Metadata
    let body: HTTP2RequestBody
    let maxMessageByteCount: Int

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(metadata: self.metadata, body: self.body.makeAsyncIterator(), deframer: GRPCMessageDeframer(maxMessageByteCount: self.maxMessageByteCount))
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        var metadata: Metadata?
        var body: HTTP2RequestBody.AsyncIterator
        var deframer: GRPCMessageDeframer
        var buffer = ByteBuffer()
        var bodyEnded = false

        mutating func next() async throws -> RPCRequestPart<GRPCMessageBytes>? {
            if let metadata = self.metadata {
                self.metadata = nil
                return .metadata(metadata)
            }
            while true {
                do {
                    if let message = try (self.bodyEnded ? self.deframer.decodeLast(buffer: &self.buffer, seenEOF: true) : self.deframer.decode(buffer: &self.buffer)) {
                        return .message(GRPCMessageBytes(message))
                    }
                } catch {
                    throw RPCError(
                        code: error.code == .messageTooLarge ? .resourceExhausted : .internalError,
                        message: error.message
                    )
                }
                if self.bodyEnded {
                    return nil
                }
                guard var chunk = try await self.body.next() else {
                    self.bodyEnded = true
                    continue
                }
                if self.buffer.readableBytes == 0 {
                    self.buffer = chunk
                } else {
                    self.buffer.discardReadBytes()
                    self.buffer.writeBuffer(&chunk)
                }
            }
        }
    }
}

/// The response side of one RPC: head, framed messages, then trailers (or trailers-only).
final class GRPCResponseWriter: ClosableRPCWriterProtocol, Sendable {
    typealias Element = RPCResponsePart<GRPCMessageBytes>

    private struct State {
        var headSent = false
        var ended = false
    }

    private let stream: HTTP2ServerStream
    private let state = Mutex(State())

    init(stream: HTTP2ServerStream) {
        self.stream = stream
    }

    func write(_ element: Element) async throws {
        switch element {
        case .metadata(let metadata):
            try self.sendHeadIfNeeded(metadata: metadata)
        case .message(let bytes):
            try self.sendHeadIfNeeded(metadata: Metadata())
            var prefix = ByteBuffer()
            GRPCWire.writeMessagePrefix(byteCount: bytes.count, into: &prefix)
            try await self.stream.write(contentsOf: [prefix, bytes.buffer])
        case .status(let status, let metadata):
            self.end(status, metadata: metadata)
        }
    }

    func write(contentsOf elements: some Sequence<Element>) async throws {
        for element in elements {
            try await self.write(element)
        }
    }

    func finish() async {
        self.end(Status(code: .internalError, message: "the response ended without a status"), metadata: Metadata())
    }

    func finish(throwing error: any Error) async {
        if let rpcError = error as? RPCError {
            self.end(Status(code: Status.Code(rpcError.code), message: rpcError.message), metadata: rpcError.metadata)
        } else {
            self.end(Status(code: .unknown, message: "\(error)"), metadata: Metadata())
        }
    }

    /// Ends the RPC with `status` unless it has ended already (deadline, handler without status).
    func endEarly(_ status: Status) {
        self.end(status, metadata: Metadata())
    }

    /// The stream is gone: nothing more may be sent.
    func abandon() {
        self.state.withLock { $0.ended = true }
    }

    private func sendHeadIfNeeded(metadata: Metadata) throws {
        let send = try self.state.withLock { state -> Bool in
            guard !state.ended else { throw RPCError(code: .cancelled, message: "the RPC has ended") }
            guard !state.headSent else { return false }
            state.headSent = true
            return true
        }
        guard send else { return }
        var fields = [HTTP2Headers.Field(name: "content-type", value: "application/grpc")]
        fields += GRPCHTTP2ServerTransport.headerFields(from: metadata)
        self.stream.sendResponseHead(status: 200, headers: HTTP2Headers(fields))
    }

    private func end(_ status: Status, metadata: Metadata) {
        let headSent: Bool? = self.state.withLock { state in
            guard !state.ended else { return nil }
            state.ended = true
            return state.headSent
        }
        switch headSent {
        case nil:
            return
        case false?:
            GRPCHTTP2ServerTransport.sendTrailersOnly(on: self.stream, status: status, metadata: metadata)
        case true?:
            let trailers = GRPCHTTP2ServerTransport.statusFields(status) + GRPCHTTP2ServerTransport.headerFields(from: metadata)
            self.stream.finish(trailers: HTTP2Headers(trailers))
        }
    }
}
