import ExecStreamCore
import ExecStreamHTTP2
import NIOCore

/// A resumable attach (`execstream-resumable: 1`, PROTOCOLS.md §9 "Resumable attach"): the native
/// adapter with stdin credit (`StdinCreditTransport`), decorated once more so that a client whose
/// connection drops can attach again and go on with no gap and no duplicate:
/// - each output delivery is preceded by a position frame (its stream offset), and it counts as
///   delivered only once the client's acknowledge frames cover it; if the stream ends first, the
///   registry gets back everything the client did not confirm;
/// - stdin credit lets the client keep what the channel has not taken, and send on from the
///   offset the first window names; acknowledgements are read however full stdin is.
///
/// Everything else (frames, status, trailers, the reset) is the decorated adapter's.
final class ResumableAttachTransport: ConfirmingOutputTransport {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.adapters)

    private let credited: StdinCreditTransport
    private var base: NativeHTTP2SessionAdapter { self.credited.base }
    /// One confirmation machine per output, and the delivery awaiting each.
    private var confirmations: [StandardStream: OutputConfirmationStateMachine] = [:]
    private var confirmationCallbacks: [StandardStream: (OutputDeliveryResult) -> Void] = [:]

    var eventLoop: any EventLoop { self.credited.eventLoop }

    init(_ base: NativeHTTP2SessionAdapter) {
        self.credited = StdinCreditTransport(base)
    }

    /// Reads the request body: stdin and acknowledgements, in order, on the event loop.
    func readFrames(into input: SessionInput) {
        self.credited.readFrames(into: input) { [weak self] stream, offset in
            self?.acknowledged(stream, offset: offset)
        }
    }

    /// The client holds every byte of `stream` before `offset`.
    private func acknowledged(_ stream: StandardStream, offset: UInt64) {
        switch self.confirmations[stream, default: OutputConfirmationStateMachine()].acknowledged(offset: offset) {
        case .none:
            break
        case .delivered:
            self.confirmationCallbacks.removeValue(forKey: stream)?(.delivered)
        case .protocolViolation:
            self.credited.failed(code: HTTP2ErrorCode.protocolError, reason: "an acknowledgement beyond what was sent")
        }
    }

    // MARK: ConfirmingOutputTransport

    func stdinAttached(_ input: SessionInput) {
        self.credited.stdinAttached(input)
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
        self.credited.whenWritable(callback)
    }

    func finishOutputs(_ streams: Set<StandardStream>) {
        self.credited.finishOutputs(streams)
    }

    func writeStatus(_ outcome: RemoteCommandOutcome) {
        self.credited.writeStatus(outcome)
    }

    /// The session's last call.
    func close() {
        self.credited.close()
    }
}
