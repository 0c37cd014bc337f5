package import ExecStreamCore
package import Logging
package import NIOCore

/// Remote command over SPDY/3.1, after the HTTP/1.1 upgrade (PROTOCOLS.md §3a, §3b, §3d).
///
/// The client opens its streams one by one (error, stdin, stdout, stderr, resize), each named by
/// its `streamtype` header and each answered with an empty SYN_REPLY; the session starts once
/// every stream the CRI request implies is there (within the creation timeout, 30 s). Nothing is
/// sent before the client's first frame. Output goes out as DATA frames without copying; the end
/// is FIN on stdout and stderr, the status on the error stream and its FIN, then GOAWAY and close.
/// SPDY has no flow control (spdystream has none): a slow client shows as the socket not being
/// writable, which holds back the delivery and so the process.
package final class SPDYSessionHandler: ChannelInboundHandler, SessionOutputTransport {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.adapters)
    package typealias InboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private let remoteCommandProtocol: SPDYRemoteCommandProtocol
    private let prepared: PreparedSession
    private let registry: ChannelRegistry
    private let logger: Logger
    private let creationTimeout: TimeAmount
    private var decoder = NIOSingleStepByteToMessageProcessor(SPDYFrameDecoder())
    private let deflater = SPDYHeaderDeflater()
    private let inflater = SPDYHeaderInflater()
    /// What each frame means: stream set-up, routing and the answers to bad frames.
    private var streams: SPDYStreamSetup
    private var context: ChannelHandlerContext?
    private var session: ExecSession?
    private var input: SessionInput?
    private var creationTimer: Scheduled<Void>?
    private var writability = WritabilityWaiters()
    private var ended = false
    private var released = false

    package init(
        remoteCommandProtocol: SPDYRemoteCommandProtocol,
        prepared: PreparedSession,
        registry: ChannelRegistry,
        logger: Logger,
        creationTimeout: TimeAmount = .seconds(30)
    ) {
        self.remoteCommandProtocol = remoteCommandProtocol
        self.prepared = prepared
        self.registry = registry
        self.logger = logger
        self.creationTimeout = creationTimeout
        let plan = prepared.plan
        self.streams = SPDYStreamSetup(
            expected: SPDYStreamSetup.expectedStreams(
                stdin: plan.stdin, stdout: plan.stdout, stderr: plan.stderr, tty: plan.tty,
                hasResizeStream: remoteCommandProtocol.hasResizeStream
            )
        )
    }

    var eventLoop: any EventLoop { self.context!.eventLoop }

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.creationTimer = context.eventLoop.scheduleTask(in: self.creationTimeout) {
            let handler = loopBound.value
            if !handler.streams.isStarted {
                handler.logger.debug("SPDY streams not all created in time", metadata: ["have": "\(handler.streams.openedTypes.map(\.rawValue))"])
            }
            handler.perform(handler.streams.creationTimedOut())
        }
    }

    /// The context refers to this handler and this handler to the context: let go of it when
    /// the pipeline does, or the connection (and all it holds) is never freed.
    package func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    package func channelInactive(context: ChannelHandlerContext) {
        self.creationTimer?.cancel()
        self.ended = true
        self.streams.connectionClosed()
        self.writability.resume()
        if let input = self.input {
            input.receive(.gone(.connectionLost))
        } else {
            self.releaseUnstarted()
        }
        context.fireChannelInactive()
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.writability.resume()
        }
        context.fireChannelWritabilityChanged()
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("SPDY connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try self.decoder.process(buffer: self.unwrapInboundIn(data)) { frame in
                try self.receive(frame)
            }
        } catch {
            // Not SPDY, an unknown control type, or a header block that does not inflate (the
            // connection's zlib stream is then lost): a session error.
            self.logger.debug("SPDY protocol error", metadata: ["error": "\(error)"])
            self.perform(self.streams.malformedInput())
        }
    }

    // MARK: Frames in

    /// Every header block is inflated, whatever its frame: the connection's zlib stream must see
    /// them all in order, or the next one does not inflate.
    private func receive(_ frame: SPDYFrame) throws {
        switch frame {
        case .synStream(let id, _, _, let fin, _, let block):
            let headers = try self.inflater.decompress(block)
            self.perform(self.streams.synStreamReceived(streamID: id, headers: headers, fin: fin))
        case .synReply(let id, _, let block):
            _ = try self.inflater.decompress(block)
            self.perform(self.streams.headersReceived(streamID: id, isReply: true))
        case .headers(let id, _, let block):
            _ = try self.inflater.decompress(block)
            self.perform(self.streams.headersReceived(streamID: id, isReply: false))
        case .data(let id, let fin, let payload):
            self.perform(self.streams.dataReceived(streamID: id, fin: fin, payload: payload))
        case .rstStream(let id, _):
            self.perform(self.streams.resetReceived(streamID: id))
        case .ping(let id):
            self.perform(self.streams.pingReceived(id: id))
        case .goAway:
            self.perform(self.streams.goAwayReceived())
        case .settings, .windowUpdate:
            break
        }
    }

    private func perform(_ actions: [SPDYStreamSetupAction]) {
        for action in actions {
            switch action {
            case .reply(let id):
                self.write(.synReply(streamID: id, fin: false, headerBlock: self.deflater.compress([])))
            case .resetStream(let id, let status):
                self.write(.rstStream(streamID: id, status: status))
            case .goAwayAndClose(let last, let status):
                self.goAwayAndClose(lastGoodStreamID: last, status: status)
            case .startSession:
                self.startSession()
            case .stdin(let bytes):
                self.stdinReceived(bytes)
            case .stdinEnded:
                self.input?.receive(.stdinClosed)
            case .resize(let bytes):
                self.input?.receive(.resize(bytes))
            case .pong(let id):
                self.write(.ping(id: id))
            case .pauseReading:
                try? self.context?.channel.syncOptions?.setOption(.autoRead, value: false)
            case .resumeReading:
                try? self.context?.channel.syncOptions?.setOption(.autoRead, value: true)
            case .close:
                self.ended = true
                self.context?.close(promise: nil)
            }
        }
    }

    private func stdinReceived(_ payload: ByteBuffer) {
        guard let input = self.input, let channel = self.context?.channel else { return }
        if input.receive(.stdin(payload)) == .pauseReading {
            // The process is behind (SPDY has no flow control): stop reading the socket.
            input.pauseReading(channel)
        }
    }

    private func startSession() {
        self.creationTimer?.cancel()
        self.creationTimer = nil
        let session = ExecSession(plan: self.prepared.plan, registry: self.registry, client: self, logger: self.logger, onRelease: self.prepared.release)
        self.released = true
        self.session = session
        self.input = session.start()
    }

    private func releaseUnstarted() {
        guard !self.released else { return }
        self.released = true
        self.prepared.release()
    }

    // MARK: Frames out

    private func write(_ frame: SPDYFrame) {
        guard let context = self.context else { return }
        var buffer = context.channel.allocator.buffer(capacity: 32)
        SPDYFrameEncoder.encode(frame, into: &buffer)
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
    }

    private func goAwayAndClose(lastGoodStreamID: UInt32, status: UInt32) {
        guard let context = self.context else { return }
        self.ended = true
        var buffer = ByteBuffer()
        SPDYFrameEncoder.encode(.goAway(lastGoodStreamID: lastGoodStreamID, status: status), into: &buffer)
        let channel = context.channel
        context.writeAndFlush(self.wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
    }

    // MARK: SessionOutputTransport

    func writeOutput(_ stream: StandardStream, _ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int) -> SessionOutputWriteResult {
        guard let context = self.context, context.channel.isActive, !self.ended,
            let id = self.streams.streamID(of: stream == .stderr ? .stderr : .stdout)
        else { return .closed }
        var header = context.channel.allocator.buffer(capacity: 8)
        SPDYFrameEncoder.writeDataHeader(streamID: id, fin: false, payloadByteCount: byteCount, into: &header)
        context.write(self.wrapOutboundOut(header), promise: nil)
        for chunk in chunks {
            context.write(self.wrapOutboundOut(chunk), promise: nil)
        }
        context.flush()
        return context.channel.isWritable ? .writable : .aboveHighWatermark
    }

    func whenWritable(_ callback: @escaping () -> Void) {
        self.writability.whenWritable(self.context?.channel, callback)
    }

    func finishOutputs(_ streams: Set<StandardStream>) {
        for type in [SPDYStreamType.stdout, .stderr] {
            if let id = self.streams.streamID(of: type) {
                self.write(.data(streamID: id, fin: true, payload: ByteBuffer()))
            }
        }
    }

    func writeStatus(_ outcome: RemoteCommandOutcome) {
        guard !self.ended, let id = self.streams.streamID(of: .error) else { return }
        let status: ByteBuffer?
        if self.remoteCommandProtocol.usesStatusJSON {
            status = ByteBuffer(bytes: RemoteCommandStatus.json(for: outcome))
        } else {
            status = outcome == .exited(code: 0) ? nil : ByteBuffer(bytes: RemoteCommandStatus.plainText(for: outcome))
        }
        if let status {
            self.write(.data(streamID: id, fin: false, payload: status))
        }
        self.write(.data(streamID: id, fin: true, payload: ByteBuffer()))
        self.perform(self.streams.sessionEnded())
    }

    /// The session's last call: it holds this handler as its client, and this handler held the
    /// session, so letting go of it here is what frees both (with the connection's zlib streams).
    func close() {
        self.session = nil
        self.input = nil
        guard !self.ended else { return }
        self.perform(self.streams.sessionEnded())
    }
}
