import ExecStreamCore
import ExecStreamHTTP2
import Logging
import NIOCore

/// A Kubernetes channel-protocol session over WebSocket on one HTTP/2 stream (RFC 8441: extended
/// CONNECT with `:protocol websocket`, answered 200). The frames are RFC 6455's, carried in the
/// stream's DATA; flow control is HTTP/2's own, as in the native format.
final class WebSocketHTTP2SessionAdapter: SessionOutputTransport {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.adapters)
    private let stream: HTTP2ServerStream
    private let protocolSession: KubernetesChannelProtocolSession
    private var ended = false

    var eventLoop: any EventLoop { self.stream.eventLoop }

    private init(stream: HTTP2ServerStream, channelProtocol: KubernetesChannelProtocol) {
        self.stream = stream
        self.protocolSession = KubernetesChannelProtocolSession(channelProtocol: channelProtocol)
    }

    /// Accepts the CONNECT and runs the session; on the stream's event loop.
    static func serve(
        _ stream: HTTP2ServerStream,
        prepared: PreparedSession,
        channelProtocol: KubernetesChannelProtocol,
        registry: ChannelRegistry,
        logger: Logger
    ) {
        stream.eventLoop.preconditionInEventLoop()
        var headers = HTTP2Headers()
        if channelProtocol != .unnamed {
            headers.add(name: "sec-websocket-protocol", value: channelProtocol.rawValue)
        }
        stream.sendResponseHead(status: 200, headers: headers)
        let client = WebSocketHTTP2SessionAdapter(stream: stream, channelProtocol: channelProtocol)
        client.sendMessage(ByteBuffer(), on: KubernetesChannelProtocolSession.firstChannel(of: prepared.plan))
        let session = ExecSession(plan: prepared.plan, registry: registry, client: client, logger: logger, onRelease: prepared.release)
        let stdin = session.start()
        let loopBound = NIOLoopBound((client: client, session: session), eventLoop: stream.eventLoop)
        stream.closeFuture.whenSuccess { reason in
            switch reason {
            case .finished:
                break
            case .reset, .connectionClosed:
                loopBound.value.session.clientVanished()
            }
        }
        let receiver = NIOLoopBoundBox(KubernetesChannelProtocolSession(channelProtocol: channelProtocol), eventLoop: stream.eventLoop)
        Task {
            await Self.readFrames(from: stream, into: loopBound, receiver: receiver, stdin: stdin, logger: logger)
        }
    }

    /// Reads frames from the request body; each message is handled on the loop, and reading waits
    /// while stdin is paused.
    private static func readFrames(
        from stream: HTTP2ServerStream,
        into bound: NIOLoopBound<(client: WebSocketHTTP2SessionAdapter, session: ExecSession)>,
        receiver: NIOLoopBoundBox<KubernetesChannelProtocolSession>,
        stdin: ClientInputProducer?,
        logger: Logger
    ) async {
        var decoder = WebSocketFrameDecoder()
        var assembler = WebSocketMessageAssembler()
        var buffered = ByteBuffer()
        do {
            for try await chunk in stream.requestBody {
                buffered.writeImmutableBuffer(chunk)
                while let frame = try Self.decode(&decoder, &buffered) {
                    switch frame.opcode {
                    case .text, .binary, .continuation:
                        guard let message = try assembler.receive(opcode: frame.opcode, fin: frame.fin, payload: frame.payload) else { continue }
                        let whole = message.payload
                        let paused = try await stream.eventLoop.submit { () throws -> Bool in
                            do {
                                return try receiver.value.receive(whole, stdin: stdin, session: bound.value.session)
                            } catch let error as ExecStreamError {
                                throw WebSocketFailure.protocolError(error.message)
                            }
                        }.get()
                        if paused, let stdin {
                            await stdin.waitUntilResumed()
                        }
                    case .ping:
                        stream.eventLoop.execute { bound.value.client.sendFrame(.pong, frame.payload) }
                    case .pong:
                        break
                    case .close:
                        stream.eventLoop.execute { bound.value.client.clientClosed() }
                        return
                    }
                }
                buffered.discardReadBytes()
            }
            // END_STREAM without a close frame: the client is gone.
            stream.eventLoop.execute { bound.value.session.clientVanished() }
        } catch let failure as WebSocketFailure {
            logger.debug("websocket over HTTP/2: failed", metadata: ["error": "\(failure.reason)", "code": "\(failure.closeCode)"])
            stream.eventLoop.execute { bound.value.client.fail(failure, session: bound.value.session) }
        } catch {
            // The stream was reset or the connection lost: the close future ends the session.
        }
    }

    // MARK: Frames

    private func sendFrame(_ opcode: WebSocketFrameOpcode, _ payload: ByteBuffer) {
        var header = ByteBuffer()
        WebSocketFrameEncoder.writeHeader(opcode: opcode, payloadByteCount: payload.readableBytes, into: &header)
        _ = self.stream.writeOnEventLoop(contentsOf: [header, payload])
    }

    private func sendMessage(_ payload: ByteBuffer, on channel: RemoteCommandChannel) {
        let (kind, message) = ChannelMessageCodec.encode(payload, on: channel, protocol: self.protocolSession.channelProtocol)
        self.sendFrame(kind == .text ? .text : .binary, message)
    }

    private func clientClosed() {
        guard !self.ended else { return }
        self.ended = true
        self.sendFrame(.close, WebSocketFrameEncoder.closePayload(code: 1000))
        self.stream.finish()
    }

    /// Fails the connection with the failure's close code (RFC 6455 §7.1.7).
    private func fail(_ failure: WebSocketFailure, session: ExecSession) {
        if !self.ended {
            self.ended = true
            self.sendFrame(.close, WebSocketFrameEncoder.closePayload(code: failure.closeCode, reason: failure.reason))
            self.stream.finish()
        }
        session.clientVanished()
    }

    /// The next frame; a decoding error as the failure it is.
    private static func decode(_ decoder: inout WebSocketFrameDecoder, _ buffer: inout ByteBuffer) throws(WebSocketFailure) -> WebSocketFrameMessage? {
        do {
            return try decoder.decode(buffer: &buffer)
        } catch {
            throw WebSocketFailure(error)
        }
    }

    // MARK: SessionOutputTransport

    func writeOutput(_ stream: StandardStream, _ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int) -> SessionOutputWriteResult {
        guard !self.ended else { return .closed }
        let channel: RemoteCommandChannel = stream == .stderr ? .stderr : .stdout
        let buffers: [ByteBuffer]
        if self.protocolSession.channelProtocol.isBase64 {
            var payload = ByteBuffer()
            payload.reserveCapacity(byteCount)
            for chunk in chunks {
                payload.writeImmutableBuffer(chunk)
            }
            let (_, message) = ChannelMessageCodec.encode(payload, on: channel, protocol: self.protocolSession.channelProtocol)
            var header = ByteBuffer()
            WebSocketFrameEncoder.writeHeader(opcode: .text, payloadByteCount: message.readableBytes, into: &header)
            buffers = [header, message]
        } else {
            // Header and channel byte, then the chunks as they are: no copy.
            var header = ByteBuffer()
            WebSocketFrameEncoder.writeHeader(opcode: .binary, payloadByteCount: byteCount + 1, into: &header)
            header.writeInteger(channel.rawValue)
            buffers = [header] + chunks
        }
        return SessionOutputWriteResult(self.stream.writeOnEventLoop(contentsOf: buffers))
    }

    func whenWritable(_ callback: @escaping () -> Void) {
        self.stream.whenWritable(callback)
    }

    func finishOutputs(_ streams: Set<StandardStream>) {
        // The status, then the close frame, end everything.
    }

    func writeStatus(_ outcome: RemoteCommandOutcome) {
        guard !self.ended else { return }
        self.ended = true
        if let status = self.protocolSession.statusPayload(for: outcome) {
            self.sendMessage(status, on: .error)
        }
        self.sendFrame(.close, WebSocketFrameEncoder.closePayload(code: 1000))
        self.stream.finish()
    }

    func close() {
        guard !self.ended else { return }
        self.ended = true
        self.stream.reset(code: HTTP2ErrorCode.cancel)
    }
}
