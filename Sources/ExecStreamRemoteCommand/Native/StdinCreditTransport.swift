import ExecStreamCore
import ExecStreamHTTP2
import NIOCore

/// Native framing with stdin credit (`execstream-stdin-credit: 1`, or any resumable attach;
/// PROTOCOLS.md §9): the native adapter, decorated so that the client learns when the stdin
/// channel has taken what it sent. A console types a chunk and waits for it to be taken before
/// typing the next, so a terminal's input buffer is never overrun.
///
/// - Stdin is credit-controlled by stdin window frames (what the channel has taken, how far the
///   client may send) instead of by HTTP/2's window: 256 KiB up front, more as the channel takes
///   bytes, none while it is full; stdin beyond the window resets the stream
///   (FLOW_CONTROL_ERROR).
/// - The request body is always read and every frame is handled on the event loop, in order, so
///   a decorator's frames (a resumable attach's acknowledgements) never wait behind stdin the
///   process is not reading.
///
/// Output, the status and the reset are the decorated adapter's.
final class StdinCreditTransport: SessionOutputTransport {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.adapters)
    /// The stdin credit a client gets.
    static let stdinWindowBytes: Int64 = 256 << 10

    let base: NativeHTTP2SessionAdapter
    /// Where stdin goes while the client may send it.
    private var stdin: SessionInput?
    private var credit = InputCreditLedger(window: StdinCreditTransport.stdinWindowBytes)
    /// Stream offset of the next stdin byte the client sends.
    private var stdinOffset: UInt64 = 0
    /// Where acknowledge frames go (a resumable attach); without it they break the protocol.
    private var onAcknowledge: ((StandardStream, UInt64) -> Void)?

    var eventLoop: any EventLoop { self.base.eventLoop }

    init(_ base: NativeHTTP2SessionAdapter) {
        self.base = base
    }

    /// Reads the request body: stdin, close and (with `onAcknowledge`) acknowledge frames go to
    /// the event loop in order; resizes go to the session at once.
    func readFrames(into input: SessionInput, onAcknowledge: ((StandardStream, UInt64) -> Void)? = nil) {
        self.onAcknowledge = onAcknowledge
        let acceptsAcknowledgements = onAcknowledge != nil
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
                        case .data(.stdin, _), .close(.stdin):
                            frames.append(frame)
                        case .acknowledge where acceptsAcknowledgements:
                            frames.append(frame)
                        case .data(.stdout, _), .data(.stderr, _), .data(.error, _), .close(.stdout), .close(.stderr), .close(.error), .close(.resize),
                            .position, .acknowledge, .stdinWindow:
                            throw ExecStreamError(
                                code: .malformedInput,
                                message: acceptsAcknowledgements
                                    ? "a resumable client sends only stdin, resize, close(stdin) and acknowledge frames"
                                    : "a client may only send stdin, resize and close(stdin) frames")
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

    /// The request body broke (`code` nil: the stream is gone already, and the close future
    /// says so) or broke the protocol (reset with `code`): no more stdin is taken, and the
    /// session hears that its client is gone.
    func failed(code: UInt32?, reason: String) {
        let input = self.stdin
        self.stdin = nil
        if let code, !self.base.responseEnded {
            self.base.reset(code: code)
            input?.receive(.gone(.protocolError(reason)))
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
                self.onAcknowledge?(channel == .stderr ? .stderr : .stdout, offset)
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
            try self.credit.received(byteCount)
        } catch {
            return self.failed(code: HTTP2ErrorCode.flowControlError, reason: "stdin beyond the granted window")
        }
        self.stdinOffset += UInt64(byteCount)
        let verdict = input.receive(.stdin(payload))
        self.carryOut(self.credit.taken(byteCount, channelPaused: verdict == .pauseReading))
    }

    private func carryOut(_ action: InputCreditLedger.Action) {
        switch action {
        case .none:
            break
        case .grant(let byteCount):
            self.grant(byteCount)
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
        self.carryOut(self.credit.resumed(channelPaused: input.stdinIsPaused))
    }

    /// Sends the stdin window after a grant (the ledger counts the grant as outstanding).
    private func grant(_ byteCount: Int64) {
        guard byteCount > 0 else { return }
        self.base.write(.stdinWindow(taken: self.stdinOffset, limit: self.stdinOffset + UInt64(self.credit.outstanding)))
    }

    // MARK: SessionOutputTransport

    /// Starts stdin, before any output: the first window names where the client sends from (an
    /// attach's channel may have taken bytes from earlier clients), or a close frame says stdin
    /// is closed for good.
    func stdinAttached(_ input: SessionInput) {
        guard let taken = input.stdinChannelOffset else {
            self.base.write(.close(.stdin))
            return
        }
        self.stdin = input
        self.stdinOffset = UInt64(taken)
        self.grant(self.credit.start())
    }

    func writeOutput(_ stream: StandardStream, _ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int) -> SessionOutputWriteResult {
        self.base.writeOutput(stream, chunks, byteCount: byteCount, streamOffset: streamOffset)
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
        self.onAcknowledge = nil
        self.base.close()
    }
}
