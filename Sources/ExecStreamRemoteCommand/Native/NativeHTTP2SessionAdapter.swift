package import ExecStreamCore
package import ExecStreamHTTP2
package import Logging
import NIOCore

/// ExecStream's own streaming format over one HTTP/2 stream (PROTOCOLS.md §9): the request body
/// carries stdin, resize and close frames; the response body carries stdout, stderr, close frames
/// and the status, which the trailers repeat (`execstream-exit-code`, `execstream-status`).
///
/// Flow control is HTTP/2's own, end to end: output is written only while the stream's queue is
/// under its watermark (the registry pauses the process reader otherwise), and request bytes are
/// consumed (WINDOW_UPDATE) only as the stdin channel has room for them.
///
/// Two options decorate it, and read the request frames themselves: stdin credit
/// (`execstream-stdin-credit: 1`, `StdinCreditTransport`) for a client that must know when
/// its stdin was taken (a console), and resumable attach (`execstream-resumable: 1`,
/// `ResumableAttachTransport`: positions, confirmations, and stdin credit too).
package final class NativeHTTP2SessionAdapter: SessionOutputTransport {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.adapters)
    static let contentType = StreamingAdmission.nativeContentType
    /// The request header asking for a resumable attach, and the response header granting it.
    static let resumableHeader = "execstream-resumable"
    /// The request header asking for stdin credit, and the response header granting it.
    static let stdinCreditHeader = "execstream-stdin-credit"

    /// How a native stream's client asked to be served.
    package enum Mode: Hashable, Sendable {
        /// HTTP/2's flow control for stdin.
        case plain
        /// Stdin window frames say what the channel took (`execstream-stdin-credit: 1`).
        case stdinCredit
        /// A resumable attach, which has stdin credit too (`execstream-resumable: 1`).
        case resumable
    }

    let stream: HTTP2ServerStream
    /// The response has ended (status and trailers, or a reset): nothing more is written.
    private(set) var responseEnded = false

    var eventLoop: any EventLoop { self.stream.eventLoop }

    init(stream: HTTP2ServerStream) {
        self.stream = stream
    }

    /// Starts the response and a session for `plan`, and reads the client's frames into it.
    /// On the stream's event loop.
    package static func serve(
        _ stream: HTTP2ServerStream,
        plan: ExecSessionPlan,
        initialTerminalSize: TerminalSize?,
        mode: Mode,
        registry: ChannelRegistry,
        logger: Logger,
        onRelease: @escaping () -> Void
    ) {
        stream.eventLoop.preconditionInEventLoop()
        let adapter = NativeHTTP2SessionAdapter(stream: stream)
        var headers: HTTP2Headers = ["content-type": Self.contentType]
        let client: any SessionOutputTransport
        let readFrames: (SessionInput) -> Void
        switch mode {
        case .plain:
            client = adapter
            readFrames = { input in Task { await Self.readFrames(from: stream, into: input) } }
        case .stdinCredit:
            headers.add(name: Self.stdinCreditHeader, value: "1")
            let credited = StdinCreditTransport(adapter)
            client = credited
            readFrames = { input in credited.readFrames(into: input) }
        case .resumable:
            headers.add(name: Self.resumableHeader, value: "1")
            let resumable = ResumableAttachTransport(adapter)
            client = resumable
            readFrames = { input in resumable.readFrames(into: input) }
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
        readFrames(input)
    }

    /// What the request asks for: a resumable attach (`execstream-resumable: 1`; only an attach
    /// can be resumed, an exec's process ends with its stream), stdin credit
    /// (`execstream-stdin-credit: 1`), or neither.
    package static func mode(of head: HTTP2RequestHead, kind: StreamingRequestKind) throws(ExecStreamError) -> Mode {
        let resumable = try Self.flag(Self.resumableHeader, in: head)
        let stdinCredit = try Self.flag(Self.stdinCreditHeader, in: head)
        guard resumable else { return stdinCredit ? .stdinCredit : .plain }
        switch kind {
        case .attach:
            return .resumable
        case .exec, .portForward:
            throw ExecStreamError(code: .invalidArgument, message: "only an attach can be resumable: an exec's process ends with its stream")
        }
    }

    /// Whether the request header `name` is present; its only valid value is 1.
    private static func flag(_ name: String, in head: HTTP2RequestHead) throws(ExecStreamError) -> Bool {
        guard let value = head.headers[first: name] else { return false }
        guard value == "1" else {
            throw ExecStreamError(code: .invalidArgument, message: "\(name) must be 1, got \"\(value)\"")
        }
        return true
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
    package static func initialTerminalSize(in head: HTTP2RequestHead) throws(ExecStreamError) -> TerminalSize? {
        guard let value = head.headers[first: "execstream-terminal-size"] else { return nil }
        let parts = value.split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let width = UInt16(parts[0]), let height = UInt16(parts[1]) else {
            throw ExecStreamError(code: .invalidArgument, message: "execstream-terminal-size must be <width>x<height>, got \"\(value)\"")
        }
        return TerminalSize(width: width, height: height)
    }

    // MARK: Writing (for the session, and for a decorator)

    /// Writes one delivery of output as a data frame, after `prefix` (frames that must travel
    /// with it, in the same write).
    func writeDelivery(_ stream: StandardStream, _ chunks: [ByteBuffer], byteCount: Int, prefix: NativeFrame? = nil) -> SessionOutputWriteResult {
        let channel: RemoteCommandChannel = stream == .stderr ? .stderr : .stdout
        var header = ByteBuffer()
        header.reserveCapacity(NativeFrameEncoder.headerByteCount * 2 + 9)
        if let prefix {
            NativeFrameEncoder.encode(prefix, into: &header)
        }
        NativeFrameEncoder.writeHeader(channel: channel.rawValue, payloadByteCount: byteCount, into: &header)
        return SessionOutputWriteResult(self.stream.writeOnEventLoop(contentsOf: [header] + chunks))
    }

    /// Writes one frame, unless the response has ended.
    func write(_ frame: NativeFrame) {
        guard !self.responseEnded else { return }
        var buffer = ByteBuffer()
        NativeFrameEncoder.encode(frame, into: &buffer)
        _ = self.stream.writeOnEventLoop(buffer)
    }

    /// Resets the stream with `code`, unless the response has ended.
    func reset(code: UInt32) {
        guard !self.responseEnded else { return }
        self.responseEnded = true
        self.stream.reset(code: code)
    }

    // MARK: SessionOutputTransport

    func writeOutput(_ stream: StandardStream, _ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int) -> SessionOutputWriteResult {
        self.writeDelivery(stream, chunks, byteCount: byteCount)
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
    }

    func close() {
        self.reset(code: HTTP2ErrorCode.cancel)
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
