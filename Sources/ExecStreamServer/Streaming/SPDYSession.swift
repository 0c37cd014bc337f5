import ExecStreamCore
import ExecStreamHTTP1
import Logging
import NIOCore

/// Remote command over SPDY/3.1, after the HTTP/1.1 upgrade (PROTOCOLS.md §3a, §3b, §3d).
///
/// The client opens its streams one by one (error, stdin, stdout, stderr, resize), each named by
/// its `streamtype` header and each answered with an empty SYN_REPLY; the session starts once
/// every stream the CRI request implies is there (within the creation timeout, 30 s). Nothing is
/// sent before the client's first frame. Output goes out as DATA frames without copying; the end
/// is FIN on stdout and stderr, the status on the error stream and its FIN, then GOAWAY and close.
/// SPDY has no flow control (spdystream has none): a slow client shows as the socket not being
/// writable, which holds back the delivery and so the process.
final class SPDYSessionHandler: ChannelInboundHandler, SessionClientStream {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.adapters)
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The stream types of remote command.
    enum StreamType: String, Hashable, CaseIterable {
        case error, stdin, stdout, stderr, resize
    }

    private let remoteCommandProtocol: SPDYRemoteCommandProtocol
    private let prepared: PreparedSession
    private let registry: ChannelRegistry
    private let logger: Logger
    private let creationTimeout: TimeAmount
    private var decoder = NIOSingleStepByteToMessageProcessor(SPDYFrameDecoder())
    private let deflater = SPDYHeaderDeflater()
    private let inflater = SPDYHeaderInflater()
    private let expected: Set<StreamType>
    private var streams: [StreamType: UInt32] = [:]
    private var types: [UInt32: StreamType] = [:]
    private var context: ChannelHandlerContext?
    private var session: ExecSession?
    private var stdin: ClientInputProducer?
    /// Stdin that arrived before every stream was there.
    private var earlyStdin: [ByteBuffer] = []
    private var earlyStdinEnded = false
    private var creationTimer: Scheduled<Void>?
    private var writability = WritabilityWaiters()
    private var ended = false
    private var released = false

    init(
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
        var expected: Set<StreamType> = [.error]
        if plan.stdin { expected.insert(.stdin) }
        if plan.stdout { expected.insert(.stdout) }
        if plan.stderr && !plan.tty { expected.insert(.stderr) }
        if plan.tty && remoteCommandProtocol.hasResizeStream { expected.insert(.resize) }
        self.expected = expected
    }

    var eventLoop: any EventLoop { self.context!.eventLoop }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.creationTimer = context.eventLoop.scheduleTask(in: self.creationTimeout) {
            let handler = loopBound.value
            guard handler.session == nil else { return }
            handler.logger.debug("SPDY streams not all created in time", metadata: ["have": "\(handler.streams.keys.map(\.rawValue))"])
            handler.goAwayAndClose(status: 0)
        }
    }

    /// The context refers to this handler and this handler to the context: let go of it when
    /// the pipeline does, or the connection (and all it holds) is never freed.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.creationTimer?.cancel()
        self.ended = true
        self.writability.resume()
        if let session = self.session {
            session.clientVanished()
        } else {
            self.releaseUnstarted()
        }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.writability.resume()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("SPDY connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try self.decoder.process(buffer: self.unwrapInboundIn(data)) { frame in
                try self.receive(frame, context: context)
            }
        } catch {
            self.logger.debug("SPDY protocol error", metadata: ["error": "\(error)"])
            self.goAwayAndClose(status: 1)
        }
    }

    // MARK: Frames in

    private func receive(_ frame: SPDYFrame, context: ChannelHandlerContext) throws {
        switch frame {
        case .synStream(let id, _, _, let fin, _, let block):
            let headers = try self.inflater.decompress(block)
            guard let typeName = headers.first(where: { $0.name == "streamtype" })?.value, let type = StreamType(rawValue: typeName),
                self.expected.contains(type), self.streams[type] == nil, self.types[id] == nil
            else {
                self.write(.rstStream(streamID: id, status: SPDY.RstStatus.protocolError))
                return
            }
            self.streams[type] = id
            self.types[id] = type
            self.write(.synReply(streamID: id, fin: false, headerBlock: self.deflater.compress([])))
            if fin && type == .stdin {
                self.stdinEnded()
            }
            if Set(self.streams.keys) == self.expected {
                self.startSession()
            }
        case .data(let id, let fin, let payload):
            switch self.types[id] {
            case .stdin?:
                if payload.readableBytes > 0 {
                    self.stdinReceived(payload)
                }
                if fin {
                    self.stdinEnded()
                }
            case .resize?:
                self.session?.resizeReceived(payload)
            case .error?, .stdout?, .stderr?, nil:
                break
            }
        case .rstStream(let id, _):
            if self.types[id] == .stdin {
                self.stdinEnded()
            }
        case .ping(let id):
            // Our pings would be even: echo the client's (odd) ones.
            if id & 1 == 1 {
                self.write(.ping(id: id))
            }
        case .goAway:
            self.ended = true
            context.close(promise: nil)
        case .synReply, .settings, .headers, .windowUpdate:
            break
        }
    }

    private func stdinReceived(_ payload: ByteBuffer) {
        guard let stdin = self.stdin else {
            if self.session == nil {
                self.earlyStdin.append(payload)
                if self.earlyStdin.reduce(0, { $0 + $1.readableBytes }) > 1 << 20 {
                    // Streams are still being created: read on once they are.
                    try? self.context?.channel.syncOptions?.setOption(.autoRead, value: false)
                }
            }
            return
        }
        stdin.produce(payload)
        if stdin.isPaused, let channel = self.context?.channel {
            // The process is behind (SPDY has no flow control): stop reading the socket.
            try? channel.syncOptions?.setOption(.autoRead, value: false)
            stdin.whenResumed {
                channel.eventLoop.execute { try? channel.syncOptions?.setOption(.autoRead, value: true) }
            }
        }
    }

    private func stdinEnded() {
        if let stdin = self.stdin {
            stdin.close()
        } else {
            self.earlyStdinEnded = true
        }
    }

    private func startSession() {
        self.creationTimer?.cancel()
        self.creationTimer = nil
        let session = ExecSession(plan: self.prepared.plan, registry: self.registry, client: self, logger: self.logger, onRelease: self.prepared.release)
        self.released = true
        self.session = session
        self.stdin = session.start()
        for chunk in self.earlyStdin {
            self.stdin?.produce(chunk)
        }
        self.earlyStdin = []
        try? self.context?.channel.syncOptions?.setOption(.autoRead, value: true)
        if self.earlyStdinEnded {
            self.stdin?.close()
        }
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

    private func goAwayAndClose(status: UInt32) {
        guard let context = self.context else { return }
        self.ended = true
        var buffer = ByteBuffer()
        SPDYFrameEncoder.encode(.goAway(lastGoodStreamID: self.types.keys.max() ?? 0, status: status), into: &buffer)
        let channel = context.channel
        context.writeAndFlush(self.wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
    }

    // MARK: SessionClientStream

    func writeOutput(_ stream: StandardStream, _ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int) -> SessionOutputWriteResult {
        guard let context = self.context, context.channel.isActive, !self.ended,
            let id = self.streams[stream == .stderr ? .stderr : .stdout]
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
        for type in [StreamType.stdout, .stderr] {
            if let id = self.streams[type] {
                self.write(.data(streamID: id, fin: true, payload: ByteBuffer()))
            }
        }
    }

    func writeStatus(_ outcome: RemoteCommandOutcome) {
        guard !self.ended, let id = self.streams[.error] else { return }
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
        self.goAwayAndClose(status: 0)
    }

    /// The session's last call: it holds this handler as its client, and this handler held the
    /// session, so letting go of it here is what frees both (with the connection's zlib streams).
    func close() {
        self.session = nil
        self.stdin = nil
        guard !self.ended else { return }
        self.goAwayAndClose(status: 0)
    }
}
