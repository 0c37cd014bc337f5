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
final class NativeHTTP2SessionClient: SessionClientStream {
    static let contentType = "application/vnd.execstream.v1"

    private let stream: HTTP2ServerStream
    private var responseEnded = false

    var eventLoop: any EventLoop { self.stream.eventLoop }

    init(stream: HTTP2ServerStream) {
        self.stream = stream
    }

    /// Starts the response and a session for `plan`, and reads the client's frames into it.
    /// On the stream's event loop.
    static func serve(
        _ stream: HTTP2ServerStream,
        plan: ExecSessionPlan,
        initialTerminalSize: TerminalSize?,
        registry: ChannelRegistry,
        logger: Logger,
        onRelease: @escaping () -> Void
    ) {
        stream.eventLoop.preconditionInEventLoop()
        let client = NativeHTTP2SessionClient(stream: stream)
        stream.sendResponseHead(status: 200, headers: ["content-type": Self.contentType])
        let session = ExecSession(plan: plan, registry: registry, client: client, logger: logger, onRelease: onRelease)
        if let initialTerminalSize {
            session.terminalResized(initialTerminalSize)
        }
        let stdin = session.start()
        let loopBound = NIOLoopBound(session, eventLoop: stream.eventLoop)
        stream.closeFuture.whenSuccess { reason in
            switch reason {
            case .finished:
                break
            case .reset, .connectionClosed:
                loopBound.value.clientVanished()
            }
        }
        Task {
            await Self.readFrames(from: stream, into: loopBound, stdin: stdin)
        }
    }

    /// Decodes the request body: stdin into its channel (pausing with it), resizes into the
    /// session. A malformed frame resets the stream, which ends the session as a vanished client.
    private static func readFrames(from stream: HTTP2ServerStream, into session: NIOLoopBound<ExecSession>, stdin: ClientInputProducer?) async {
        var decoder = NativeFrameDecoder()
        var resizes = TerminalSizeDecoder()
        var buffered = ByteBuffer()
        do {
            for try await chunk in stream.requestBody {
                buffered.writeImmutableBuffer(chunk)
                while let frame = try decoder.decode(buffer: &buffered) {
                    switch frame {
                    case .data(.stdin, let payload):
                        stdin?.produce(payload)
                    case .data(.resize, let payload):
                        for size in try resizes.feed(payload.readableBytesView) {
                            session.eventLoop.execute { session.value.terminalResized(size) }
                        }
                    case .close(.stdin):
                        stdin?.close()
                    case .data(.stdout, _), .data(.stderr, _), .data(.error, _), .close(.stdout), .close(.stderr), .close(.error), .close(.resize):
                        throw ExecStreamError(code: .malformedInput, message: "a client may only send stdin, resize and close(stdin) frames")
                    }
                }
                buffered.discardReadBytes()
                await stdin?.waitUntilResumed()
            }
            _ = try decoder.decodeLast(buffer: &buffered, seenEOF: true)
            // END_STREAM ends stdin (a second close after a close frame changes nothing).
            stdin?.close()
        } catch let error as ExecStreamError {
            stdin?.detach()
            stream.reset(code: HTTP2ErrorCode.protocolError)
            _ = error
        } catch {
            // The stream was reset or the connection lost: the close future ends the session.
            stdin?.detach()
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

    // MARK: SessionClientStream

    func writeOutput(_ stream: StandardStream, _ chunks: [ByteBuffer], byteCount: Int) -> SessionOutputWriteResult {
        let channel: RemoteCommandChannel = stream == .stderr ? .stderr : .stdout
        var header = ByteBuffer()
        header.reserveCapacity(NativeFrameEncoder.headerByteCount)
        NativeFrameEncoder.writeHeader(channel: channel.rawValue, payloadByteCount: byteCount, into: &header)
        return SessionOutputWriteResult(self.stream.writeOnEventLoop(contentsOf: [header] + chunks))
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
        if !self.responseEnded {
            self.responseEnded = true
            self.stream.reset(code: HTTP2ErrorCode.cancel)
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
