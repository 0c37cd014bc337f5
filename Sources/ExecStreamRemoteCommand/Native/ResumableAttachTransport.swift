import ExecStreamCore
import ExecStreamHTTP2
import NIOCore

/// A resumable attach (`execstream-resumable: 1`, PROTOCOLS.md §9 "Resumable attach"): the native
/// adapter, decorated so that a client whose connection drops can attach again and go on with no
/// gap and no duplicate. It differs from a plain native stream in three ways:
/// - each output delivery is preceded by a position frame (its stream offset), and it counts as
///   delivered only once the client's acknowledge frames cover it; if the stream ends first, the
///   registry gets back everything the client did not confirm;
/// - stdin is credit-controlled by stdin window frames (what the channel has taken, how far the
///   client may send), so the request body is always read and acknowledgements never wait
///   behind stdin the process is not reading;
/// - every request frame is handled on the event loop, in order.
///
/// Everything else (frames, status, trailers, the reset) is the decorated adapter's.
final class ResumableAttachTransport: ConfirmingOutputTransport {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.adapters)
    /// The stdin credit a client gets.
    static let stdinWindowBytes: Int64 = 256 << 10

    private let base: NativeHTTP2SessionAdapter
    /// One confirmation machine per output, and the delivery awaiting each.
    private var confirmations: [StandardStream: OutputConfirmationStateMachine] = [:]
    private var confirmationCallbacks: [StandardStream: (OutputDeliveryResult) -> Void] = [:]
    /// Where stdin goes while the client may send it.
    private var stdin: SessionInput?
    private var stdinCredit = InputCreditLedger(window: ResumableAttachTransport.stdinWindowBytes)
    /// Stream offset of the next stdin byte the client sends.
    private var stdinOffset: UInt64 = 0

    var eventLoop: any EventLoop { self.base.eventLoop }

    init(_ base: NativeHTTP2SessionAdapter) {
        self.base = base
    }

    /// Reads the request body: every frame goes to the event loop in order. Nothing here waits
    /// for stdin to have room (the client's credit bounds it), so acknowledgements are read
    /// however full stdin is.
    func readFrames(into input: SessionInput) {
        let stream = self.base.stream
        let transport = NIOLoopBound(self, eventLoop: self.eventLoop)
        Task {
            var decoder = NativeFrameDecoder()
            var buffered = ByteBuffer()
            let eventLoop = transport.eventLoop
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
                        eventLoop.execute { transport.value.received(received) }
                    }
                }
                _ = try decoder.decodeLast(buffer: &buffered, seenEOF: true)
                eventLoop.execute { transport.value.received([.close(.stdin)]) }
            } catch let error as ExecStreamError {
                eventLoop.execute { transport.value.failed(code: HTTP2ErrorCode.protocolError, reason: error.message) }
            } catch {
                // The stream was reset or the connection lost: the close future says so.
                eventLoop.execute { transport.value.failed(code: nil, reason: "") }
            }
        }
    }

    // MARK: Client frames (on the event loop)

    /// Frames from the client, in order.
    private func received(_ frames: [NativeFrame]) {
        for frame in frames {
            guard !self.base.responseEnded else { return }
            switch frame {
            case .data(.stdin, let payload):
                self.stdinReceived(payload)
            case .close(.stdin):
                self.stdin?.receive(.stdinClosed)
                self.stdin = nil
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
        guard let input = self.stdin else { return }
        let byteCount = Int64(payload.readableBytes)
        do {
            try self.stdinCredit.received(byteCount)
        } catch {
            return self.failed(code: HTTP2ErrorCode.flowControlError, reason: "stdin beyond the granted window")
        }
        self.stdinOffset += UInt64(byteCount)
        let verdict = input.receive(.stdin(payload))
        self.carryOut(self.stdinCredit.taken(byteCount, channelPaused: verdict == .pauseReading))
    }

    /// The client holds every byte of `stream` before `offset`.
    private func acknowledged(_ stream: StandardStream, offset: UInt64) {
        switch self.confirmations[stream, default: OutputConfirmationStateMachine()].acknowledged(offset: offset) {
        case .none:
            break
        case .delivered:
            self.confirmationCallbacks.removeValue(forKey: stream)?(.delivered)
        case .protocolViolation:
            self.failed(code: HTTP2ErrorCode.protocolError, reason: "an acknowledgement beyond what was sent")
        }
    }

    /// The request body broke (`code` nil: the stream is gone already, and the close future
    /// says so) or broke the protocol (reset with `code`): no more stdin is taken, and the
    /// session hears that its client is gone.
    private func failed(code: UInt32?, reason: String) {
        let input = self.stdin
        self.stdin = nil
        if let code, !self.base.responseEnded {
            self.base.reset(code: code)
            input?.receive(.gone(.protocolError(reason)))
        }
    }

    private func carryOut(_ action: InputCreditLedger.Action) {
        switch action {
        case .none:
            break
        case .grant(let byteCount):
            self.grantStdin(byteCount)
        case .awaitResume:
            let transport = NIOLoopBound(self, eventLoop: self.eventLoop)
            let eventLoop = self.eventLoop
            self.stdin?.whenReadable {
                eventLoop.execute { transport.value.stdinResumed() }
            }
        }
    }

    private func stdinResumed() {
        guard let input = self.stdin, input.acceptsStdin else { return }
        self.carryOut(self.stdinCredit.resumed(channelPaused: input.stdinIsPaused))
    }

    /// Sends the stdin window after a grant (the ledger counts the grant as outstanding).
    private func grantStdin(_ byteCount: Int64) {
        guard byteCount > 0 else { return }
        self.base.write(.stdinWindow(taken: self.stdinOffset, limit: self.stdinOffset + UInt64(self.stdinCredit.outstanding)))
    }

    // MARK: ConfirmingOutputTransport

    /// Starts stdin, before any output: the first window names where the client sends from (or
    /// a close frame says stdin is closed for good).
    func stdinAttached(_ input: SessionInput) {
        guard let taken = input.stdinChannelOffset else {
            self.base.write(.close(.stdin))
            return
        }
        self.stdin = input
        self.stdinOffset = UInt64(taken)
        self.grantStdin(self.stdinCredit.start())
    }

    func writeOutput(_ stream: StandardStream, _ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int) -> SessionOutputWriteResult {
        let channel: RemoteCommandChannel = stream == .stderr ? .stderr : .stdout
        let result = self.base.writeDelivery(stream, chunks, byteCount: byteCount, prefix: .position(channel, offset: UInt64(streamOffset)))
        switch result {
        case .closed:
            return result
        case .writable, .aboveHighWatermark, .awaitingConfirmation:
            self.confirmations[stream, default: OutputConfirmationStateMachine()].sent(streamOffset: UInt64(streamOffset), byteCount: byteCount)
            return .awaitingConfirmation
        }
    }

    func whenConfirmed(_ stream: StandardStream, _ callback: @escaping (OutputDeliveryResult) -> Void) {
        precondition(self.confirmationCallbacks[stream] == nil, "one delivery per output awaits confirmation")
        self.confirmationCallbacks[stream] = callback
    }

    func abandonUnconfirmedOutput() {
        for stream in [StandardStream.stdout, .stderr] {
            guard let confirmed = self.confirmations[stream]?.abandoned(),
                let callback = self.confirmationCallbacks.removeValue(forKey: stream)
            else { continue }
            callback(.failed(deliveredByteCount: confirmed))
        }
    }

    func whenWritable(_ callback: @escaping () -> Void) {
        self.base.whenWritable(callback)
    }

    func finishOutputs(_ streams: Set<StandardStream>) {
        self.base.finishOutputs(streams)
    }

    func writeStatus(_ outcome: RemoteCommandOutcome) {
        self.base.writeStatus(outcome)
        self.stdin = nil
    }

    /// The session's last call. The input refers to the session, which refers to this
    /// transport: letting go of it here breaks the cycle, however the session ended.
    func close() {
        self.stdin = nil
        self.base.close()
    }
}
