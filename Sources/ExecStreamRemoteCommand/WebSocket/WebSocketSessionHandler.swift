package import ExecStreamCore
package import Logging
package import NIOCore
package import NIOWebSocket

/// A Kubernetes channel-protocol session over one WebSocket connection (PROTOCOLS.md §3c, §3d):
/// every subprotocol from `""` to `v5.channel.k8s.io`, binary or base64 framing.
///
/// Output is one message per delivery; while the connection is not writable the delivery is not
/// acknowledged, so the process is paused at the registry's watermark. Stdin pauses reading from
/// the socket (autoRead) while its channel is full. The ending is status on channel 3, then a
/// close frame with code 1000.
package final class WebSocketSessionHandler: ChannelInboundHandler, SessionOutputTransport {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.adapters)
    package typealias InboundIn = WebSocketFrame
    package typealias OutboundOut = WebSocketFrame

    private let channelProtocol: KubernetesChannelProtocol
    private var protocolSession: KubernetesChannelProtocolSession
    /// Joins fragmented messages (RFC 6455 §5.4), as on the RFC 8441 carrier.
    private var assembler = WebSocketMessageAssembler()
    private let prepared: PreparedSession
    private let registry: ChannelRegistry
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var session: ExecSession?
    private var input: SessionInput?
    private var writability = WritabilityWaiters()
    /// The status and the close frame have been sent.
    private var ended = false
    private var vanished = false

    package init(channelProtocol: KubernetesChannelProtocol, prepared: PreparedSession, registry: ChannelRegistry, logger: Logger) {
        self.channelProtocol = channelProtocol
        self.protocolSession = KubernetesChannelProtocolSession(channelProtocol: channelProtocol)
        self.prepared = prepared
        self.registry = registry
        self.logger = logger
    }

    var eventLoop: any EventLoop { self.context!.eventLoop }

    /// The context refers to this handler and this handler to the context: let go of it when
    /// the pipeline does, or the connection (and all it holds) is never freed.
    package func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let plan = self.prepared.plan
        let session = ExecSession(plan: plan, registry: self.registry, client: self, logger: self.logger, onRelease: self.prepared.release)
        self.session = session
        // Writing can find the connection reset and close it at once, channelInactive included:
        // the session exists by then, so it hears that its client is gone, and is not started.
        self.send(ByteBuffer(), on: KubernetesChannelProtocolSession.firstChannel(of: plan), context: context)
        guard !self.vanished else { return }
        self.input = session.start()
    }

    package func channelInactive(context: ChannelHandlerContext) {
        self.clientGone(.connectionLost)
        self.writability.resume()
        context.fireChannelInactive()
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.writability.resume()
        }
        context.fireChannelWritabilityChanged()
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("websocket session error", metadata: ["error": "\(error)"])
        self.clientGone(.protocolError("\(error)"))
        context.close(promise: nil)
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .text, .continuation:
            let opcode: WebSocketFrameOpcode = frame.opcode == .text ? .text : frame.opcode == .binary ? .binary : .continuation
            do {
                if let message = try self.assembler.receive(opcode: opcode, fin: frame.fin, payload: frame.unmaskedData) {
                    self.receive(message.payload, context: context)
                }
            } catch {
                self.fail(error, context: context)
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(self.wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            // The client is leaving: answer its close, then let go (an exec's group is killed
            // unless the session already ended).
            if !self.ended {
                self.ended = true
                var code = ByteBuffer()
                code.write(webSocketErrorCode: .normalClosure)
                context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: code)))
                    .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
            }
            self.clientGone(.closed)
        case .pong:
            break
        default:
            break
        }
    }

    private func receive(_ message: ByteBuffer, context: ChannelHandlerContext) {
        guard let input = self.input else { return }
        let event: ClientEvent?
        do {
            event = try self.protocolSession.event(for: message)
        } catch {
            return self.fail(.protocolError(error.message), context: context)
        }
        if let event, input.receive(event) == .pauseReading {
            // The process is behind: stop reading until its stdin has room.
            input.pauseReading(context.channel)
        }
    }

    /// Fails the connection with the failure's close code (RFC 6455 §7.1.7).
    private func fail(_ failure: WebSocketFailure, context: ChannelHandlerContext) {
        self.logger.debug("websocket failed", metadata: ["error": "\(failure.reason)", "code": "\(failure.closeCode)"])
        guard !self.ended else { return }
        self.ended = true
        var data = ByteBuffer()
        data.writeInteger(failure.closeCode)
        data.writeString(String(failure.reason.prefix(120)))
        context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        self.clientGone(.protocolError(failure.reason))
    }

    /// The session decides what a client that is gone means (its stdin, its process, its
    /// channels). Before it has started (the first write found the connection reset), the
    /// session, not started, only lets go.
    private func clientGone(_ reason: ClientGoneReason) {
        guard !self.vanished else { return }
        self.vanished = true
        if let input = self.input {
            input.receive(.gone(reason))
        } else {
            self.session?.clientGone(reason)
        }
    }

    private func send(_ payload: ByteBuffer, on channel: RemoteCommandChannel, context: ChannelHandlerContext) {
        let (kind, message) = ChannelMessageCodec.encode(payload, on: channel, protocol: self.channelProtocol, allocator: context.channel.allocator)
        let frame = WebSocketFrame(fin: true, opcode: kind == .text ? .text : .binary, data: message)
        context.writeAndFlush(self.wrapOutboundOut(frame), promise: nil)
    }

    // MARK: SessionOutputTransport

    func writeOutput(_ stream: StandardStream, _ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int) -> SessionOutputWriteResult {
        guard let context = self.context, context.channel.isActive, !self.ended else { return .closed }
        var payload: ByteBuffer
        if chunks.count == 1 {
            payload = chunks[0]
        } else {
            payload = context.channel.allocator.buffer(capacity: byteCount)
            for chunk in chunks {
                payload.writeImmutableBuffer(chunk)
            }
        }
        self.send(payload, on: stream == .stderr ? .stderr : .stdout, context: context)
        return context.channel.isWritable ? .writable : .aboveHighWatermark
    }

    func whenWritable(_ callback: @escaping () -> Void) {
        self.writability.whenWritable(self.context?.channel, callback)
    }

    func finishOutputs(_ streams: Set<StandardStream>) {
        // A WebSocket has no per-channel end: the status, then the close frame, end everything.
    }

    func writeStatus(_ outcome: RemoteCommandOutcome) {
        guard let context = self.context, !self.ended else { return }
        self.ended = true
        if let status = self.protocolSession.statusPayload(for: outcome) {
            self.send(status, on: .error, context: context)
        }
        var code = ByteBuffer()
        code.write(webSocketErrorCode: .normalClosure)
        context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: code)))
            .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
    }

    /// The session's last call: it holds this handler as its client and this handler held the
    /// session, so letting go of it here frees both.
    func close() {
        self.session = nil
        self.input = nil
        guard let context = self.context, !self.ended else { return }
        self.ended = true
        context.close(promise: nil)
    }
}
