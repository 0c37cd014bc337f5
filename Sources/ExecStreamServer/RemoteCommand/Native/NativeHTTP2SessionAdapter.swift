import ExecStreamCore
import ExecStreamHTTP2
import Logging
import NIOCore

/// ExecStream's own streaming format over one HTTP/2 stream (PROTOCOLS.md §9): the request body
/// carries stdin, resize and close frames; the response body carries stdout, stderr, close frames
/// and the status, which the trailers repeat (`execstream-exit-code`, `execstream-status`).
///
/// Flow control is HTTP/2's own, end to end: output is written only while the stream's queue is
/// under its watermark (the registry pauses the process reader otherwise), and request bytes are
/// consumed (WINDOW_UPDATE) only as the stdin channel has room for them.
///
/// A **resumable attach** (`execstream-resumable: 1`, §9 "Resumable attach") differs in three
/// ways, so that a client whose connection drops can attach again and go on with no gap and no
/// duplicate:
/// - each output delivery is preceded by a position frame (its stream offset), and it counts as
///   delivered only once the client's acknowledge frames cover it; if the stream ends first, the
///   registry gets back everything the client did not confirm;
/// - stdin is credit-controlled by stdin window frames (what the channel has taken, how far the
///   client may send), so the request body is always read and acknowledgements never wait
///   behind stdin the process is not reading;
/// - every request frame is handled on the event loop, in order.
final class NativeHTTP2SessionAdapter: ConfirmingOutputTransport {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.adapters)
    static let contentType = StreamingAdmission.nativeContentType
    /// The request header asking for a resumable attach, and the response header granting it.
    static let resumableHeader = "execstream-resumable"
    /// The stdin credit of a resumable attach.
    static let resumableStdinWindowBytes: Int64 = 256 << 10

    private let stream: HTTP2ServerStream
    private var responseEnded = false
    /// The resumable attach's bookkeeping; nil for a plain stream.
    private var resumable: ResumableState?

    /// What a resumable attach keeps: one confirmation machine per output, the stdin credit.
    private struct ResumableState {
        var confirmations: [StandardStream: OutputConfirmationStateMachine] = [:]
        var confirmationCallbacks: [StandardStream: (OutputDeliveryResult) -> Void] = [:]
        var stdin: SessionInput?
        var stdinCredit = InputCreditLedger(window: NativeHTTP2SessionAdapter.resumableStdinWindowBytes)
        /// Stream offset of the next stdin byte the client sends.
        var stdinOffset: UInt64 = 0
    }

    var eventLoop: any EventLoop { self.stream.eventLoop }

    init(stream: HTTP2ServerStream, resumable: Bool) {
        self.stream = stream
        self.resumable = resumable ? ResumableState() : nil
    }

    /// Starts the response and a session for `plan`, and reads the client's frames into it.
    /// On the stream's event loop.
    static func serve(
        _ stream: HTTP2ServerStream,
        plan: ExecSessionPlan,
        initialTerminalSize: TerminalSize?,
        resumable: Bool,
        registry: ChannelRegistry,
        logger: Logger,
        onRelease: @escaping () -> Void
    ) {
        stream.eventLoop.preconditionInEventLoop()
        let client = NativeHTTP2SessionAdapter(stream: stream, resumable: resumable)
        var headers: HTTP2Headers = ["content-type": Self.contentType]
        if resumable {
            headers.add(name: Self.resumableHeader, value: "1")
        }
        stream.sendResponseHead(status: 200, headers: headers)
        let session = ExecSession(plan: plan, registry: registry, client: client, logger: logger, onRelease: onRelease)
        if let initialTerminalSize {
            session.terminalResized(initialTerminalSize)
        }
        let input = session.start()
        stream.closeFuture.whenSuccess { reason in
            if let gone = ClientGoneReason(reason) {
                input.receive(.gone(gone))
            }
        }
        if resumable {
            let boundClient = NIOLoopBound(client, eventLoop: stream.eventLoop)
            Task {
                await Self.readResumableFrames(from: stream, client: boundClient, input: input)
            }
        } else {
            Task {
                await Self.readFrames(from: stream, into: input)
            }
        }
    }

    /// Whether the request asks for a resumable attach (`execstream-resumable: 1`); only an attach
    /// can be resumed (an exec's process ends with its stream).
    static func isResumable(_ head: HTTP2RequestHead, kind: StreamingRequestKind) throws(ExecStreamError) -> Bool {
        guard let value = head.headers[first: Self.resumableHeader] else { return false }
        guard value == "1" else {
            throw ExecStreamError(code: .invalidArgument, message: "\(Self.resumableHeader) must be 1, got \"\(value)\"")
        }
        switch kind {
        case .attach:
            return true
        case .exec, .portForward:
            throw ExecStreamError(code: .invalidArgument, message: "only an attach can be resumable: an exec's process ends with its stream")
        }
    }

    /// Reads a resumable attach's request body: every frame goes to the event loop in order.
    /// Nothing here waits for stdin to have room (the client's credit bounds it), so
    /// acknowledgements are read however full stdin is.
    private static func readResumableFrames(
        from stream: HTTP2ServerStream,
        client: NIOLoopBound<NativeHTTP2SessionAdapter>,
        input: SessionInput
    ) async {
        var decoder = NativeFrameDecoder()
        var buffered = ByteBuffer()
        let eventLoop = client.eventLoop
        do {
            for try await chunk in stream.requestBody {
                buffered.writeImmutableBuffer(chunk)
                var frames: [NativeFrame] = []
                while let frame = try decoder.decode(buffer: &buffered) {
                    switch frame {
                    case .data(.resize, let payload):
                        input.receive(.resize(payload))
                    case .data(.stdin, _), .close(.stdin), .acknowledge:
                        frames.append(frame)
                    case .data(.stdout, _), .data(.stderr, _), .data(.error, _), .close(.stdout), .close(.stderr), .close(.error), .close(.resize),
                        .position, .stdinWindow:
                        throw ExecStreamError(code: .malformedInput, message: "a resumable client sends only stdin, resize, close(stdin) and acknowledge frames")
                    }
                }
                buffered.discardReadBytes()
                if !frames.isEmpty {
                    let received = frames
                    eventLoop.execute { client.value.received(received) }
                }
            }
            _ = try decoder.decodeLast(buffer: &buffered, seenEOF: true)
            eventLoop.execute { client.value.received([.close(.stdin)]) }
        } catch let error as ExecStreamError {
            _ = error
            eventLoop.execute { client.value.failed(code: HTTP2ErrorCode.protocolError) }
        } catch {
            // The stream was reset or the connection lost: the close future ends the session.
            eventLoop.execute { client.value.failed(code: nil) }
        }
    }

    /// Decodes the request body into client events; reading waits while stdin is paused. A
    /// malformed frame resets the stream, and the session hears that its client is gone.
    private static func readFrames(from stream: HTTP2ServerStream, into input: SessionInput) async {
        var decoder = NativeFrameDecoder()
        var buffered = ByteBuffer()
        do {
            for try await chunk in stream.requestBody {
                buffered.writeImmutableBuffer(chunk)
                var verdict = ClientInputVerdict.readMore
                while let frame = try decoder.decode(buffer: &buffered) {
                    switch frame {
                    case .data(.stdin, let payload):
                        verdict = input.receive(.stdin(payload))
                    case .data(.resize, let payload):
                        input.receive(.resize(payload))
                    case .close(.stdin):
                        input.receive(.stdinClosed)
                    case .data(.stdout, _), .data(.stderr, _), .data(.error, _), .close(.stdout), .close(.stderr), .close(.error), .close(.resize),
                        .position, .acknowledge, .stdinWindow:
                        throw ExecStreamError(code: .malformedInput, message: "a client may only send stdin, resize and close(stdin) frames")
                    }
                }
                buffered.discardReadBytes()
                if verdict == .pauseReading {
                    await input.readable()
                }
            }
            _ = try decoder.decodeLast(buffer: &buffered, seenEOF: true)
            // END_STREAM ends stdin (a second close after a close frame changes nothing).
            input.receive(.stdinClosed)
        } catch let error as ExecStreamError {
            stream.reset(code: HTTP2ErrorCode.protocolError)
            input.receive(.gone(.protocolError(error.message)))
        } catch {
            // The stream was reset or the connection lost: the close future says so.
        }
    }

    /// The `execstream-terminal-size: <width>x<height>` request header: the terminal's size before
    /// the process starts (a resize frame can only arrive after the stream is open, which is too
    /// late for a command such as `stty size`).
    static func initialTerminalSize(in head: HTTP2RequestHead) throws(ExecStreamError) -> TerminalSize? {
        guard let value = head.headers[first: "execstream-terminal-size"] else { return nil }
        let parts = value.split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let width = UInt16(parts[0]), let height = UInt16(parts[1]) else {
            throw ExecStreamError(code: .invalidArgument, message: "execstream-terminal-size must be <width>x<height>, got \"\(value)\"")
        }
        return TerminalSize(width: width, height: height)
    }

    // MARK: Resumable attach (on the event loop)

    /// Starts a resumable attach's stdin, before any output: the first window names where the
    /// client sends from (or a close frame says stdin is closed for good).
    func stdinAttached(_ input: SessionInput) {
        guard self.resumable != nil else { return }
        guard let taken = input.stdinChannelOffset else {
            self.write(.close(.stdin))
            return
        }
        self.resumable?.stdin = input
        self.resumable?.stdinOffset = UInt64(taken)
        if let grant = self.resumable?.stdinCredit.start() {
            self.grantStdin(grant)
        }
    }

    /// Frames from the client, in order.
    private func received(_ frames: [NativeFrame]) {
        for frame in frames {
            guard self.resumable != nil, !self.responseEnded else { return }
            switch frame {
            case .data(.stdin, let payload):
                self.stdinReceived(payload)
            case .close(.stdin):
                self.resumable!.stdin?.receive(.stdinClosed)
                self.resumable!.stdin = nil
            case .acknowledge(let channel, let offset):
                self.acknowledged(channel == .stderr ? .stderr : .stdout, offset: offset)
            case .data(.stdout, _), .data(.stderr, _), .data(.error, _), .data(.resize, _), .close(.stdout), .close(.stderr), .close(.error),
                .close(.resize), .position, .stdinWindow:
                preconditionFailure("the frame reader passes on only stdin, close(stdin) and acknowledge frames")
            }
        }
    }

    /// Stdin bytes within the client's credit go into the channel, and credit comes back.
    private func stdinReceived(_ payload: ByteBuffer) {
        guard let input = self.resumable!.stdin else { return }
        let byteCount = Int64(payload.readableBytes)
        do {
            try self.resumable!.stdinCredit.received(byteCount)
        } catch {
            return self.failed(code: HTTP2ErrorCode.flowControlError)
        }
        self.resumable!.stdinOffset += UInt64(byteCount)
        let verdict = input.receive(.stdin(payload))
        self.carryOut(self.resumable!.stdinCredit.taken(byteCount, channelPaused: verdict == .pauseReading))
    }

    /// The client holds every byte of `stream` before `offset`.
    private func acknowledged(_ stream: StandardStream, offset: UInt64) {
        switch self.resumable!.confirmations[stream, default: OutputConfirmationStateMachine()].acknowledged(offset: offset) {
        case .none:
            break
        case .delivered:
            self.resumable!.confirmationCallbacks.removeValue(forKey: stream)?(.delivered)
        case .protocolViolation:
            self.failed(code: HTTP2ErrorCode.protocolError)
        }
    }

    /// The request body broke (`code` nil: the stream is gone already, and the close future
    /// says so) or broke the protocol (reset with `code`): no more stdin is taken, and the
    /// session hears that its client is gone.
    private func failed(code: UInt32?) {
        let input = self.resumable?.stdin
        self.resumable?.stdin = nil
        if let code, !self.responseEnded {
            self.responseEnded = true
            self.stream.reset(code: code)
            input?.receive(.gone(.protocolError("HTTP/2 error \(code)")))
        }
    }

    private func carryOut(_ action: InputCreditLedger.Action) {
        switch action {
        case .none:
            break
        case .grant(let byteCount):
            self.grantStdin(byteCount)
        case .awaitResume:
            let client = NIOLoopBound(self, eventLoop: self.eventLoop)
            let eventLoop = self.eventLoop
            self.resumable?.stdin?.whenReadable {
                eventLoop.execute { client.value.stdinResumed() }
            }
        }
    }

    private func stdinResumed() {
        guard let input = self.resumable?.stdin, input.acceptsStdin, let action = self.resumable?.stdinCredit.resumed(channelPaused: input.stdinIsPaused)
        else { return }
        self.carryOut(action)
    }

    /// Sends the stdin window after a grant (the ledger counts the grant as outstanding).
    private func grantStdin(_ byteCount: Int64) {
        guard let state = self.resumable, byteCount > 0 else { return }
        self.write(.stdinWindow(taken: state.stdinOffset, limit: state.stdinOffset + UInt64(state.stdinCredit.outstanding)))
    }

    private func write(_ frame: NativeFrame) {
        guard !self.responseEnded else { return }
        var buffer = ByteBuffer()
        NativeFrameEncoder.encode(frame, into: &buffer)
        _ = self.stream.writeOnEventLoop(buffer)
    }

    // MARK: SessionOutputTransport

    func writeOutput(_ stream: StandardStream, _ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int) -> SessionOutputWriteResult {
        let channel: RemoteCommandChannel = stream == .stderr ? .stderr : .stdout
        var header = ByteBuffer()
        header.reserveCapacity(NativeFrameEncoder.headerByteCount * 2 + 9)
        if self.resumable != nil {
            NativeFrameEncoder.encode(.position(channel, offset: UInt64(streamOffset)), into: &header)
        }
        NativeFrameEncoder.writeHeader(channel: channel.rawValue, payloadByteCount: byteCount, into: &header)
        let result = SessionOutputWriteResult(self.stream.writeOnEventLoop(contentsOf: [header] + chunks))
        guard self.resumable != nil else { return result }
        switch result {
        case .closed:
            return result
        case .writable, .aboveHighWatermark, .awaitingConfirmation:
            self.resumable!.confirmations[stream, default: OutputConfirmationStateMachine()].sent(streamOffset: UInt64(streamOffset), byteCount: byteCount)
            return .awaitingConfirmation
        }
    }

    func whenConfirmed(_ stream: StandardStream, _ callback: @escaping (OutputDeliveryResult) -> Void) {
        precondition(self.resumable?.confirmationCallbacks[stream] == nil, "one delivery per output awaits confirmation")
        self.resumable?.confirmationCallbacks[stream] = callback
    }

    var isResumable: Bool { self.resumable != nil }

    func abandonUnconfirmedOutput() {
        guard self.resumable != nil else { return }
        for stream in [StandardStream.stdout, .stderr] {
            guard let confirmed = self.resumable!.confirmations[stream]?.abandoned(),
                let callback = self.resumable!.confirmationCallbacks.removeValue(forKey: stream)
            else { continue }
            callback(.failed(deliveredByteCount: confirmed))
        }
    }

    func whenWritable(_ callback: @escaping () -> Void) {
        self.stream.whenWritable(callback)
    }

    func finishOutputs(_ streams: Set<StandardStream>) {
        var frames = ByteBuffer()
        for stream in [StandardStream.stdout, .stderr] where streams.contains(stream) {
            NativeFrameEncoder.encode(.close(stream == .stdout ? .stdout : .stderr), into: &frames)
        }
        if frames.readableBytes > 0 {
            _ = self.stream.writeOnEventLoop(frames)
        }
    }

    func writeStatus(_ outcome: RemoteCommandOutcome) {
        let status = RemoteCommandStatus.json(for: outcome)
        var frame = ByteBuffer()
        NativeFrameEncoder.encode(.data(.error, ByteBuffer(bytes: status)), into: &frame)
        _ = self.stream.writeOnEventLoop(frame)
        var trailers = HTTP2Headers()
        if case .exited(let code) = outcome {
            trailers.add(name: "execstream-exit-code", value: String(code))
        }
        trailers.add(name: "execstream-status", value: String(decoding: status, as: UTF8.self))
        self.stream.finish(trailers: trailers)
        self.responseEnded = true
        self.resumable?.stdin = nil
    }

    func close() {
        if !self.responseEnded {
            self.responseEnded = true
            self.stream.reset(code: HTTP2ErrorCode.cancel)
        }
    }
}

extension ClientGoneReason {
    /// Why the client of a stream that closed is gone; nil if the stream finished normally.
    init?(_ reason: HTTP2StreamCloseReason) {
        switch reason {
        case .finished: return nil
        case .reset: self = .reset
        case .connectionClosed: self = .connectionLost
        }
    }
}

extension SessionOutputWriteResult {
    /// What a write to an HTTP/2 stream means for the session: the stream's watermarks are the
    /// client's.
    init(_ result: HTTP2WriteResult) {
        switch result {
        case .writable: self = .writable
        case .aboveHighWatermark: self = .aboveHighWatermark
        case .closed: self = .closed
        }
    }
}
