public import NIOCore

// # SPDY remote command: stream set-up and routing
//
// One SPDY/3.1 connection after the `/exec` or `/attach` upgrade (PROTOCOLS.md §3b). The client
// opens one stream per `streamtype` (error, stdin, stdout, stderr, resize); which ones a request
// needs follows from its CRI flags. The machine decides what every frame means; the handler
// inflates header blocks, writes frames and owns the session.
//
//   creating ──SYN_STREAM (the last expected type)──▶ started ──goAwayReceived / close──▶ closed
//     │  SYN_STREAM of an expected type: SYN_REPLY          │ DATA on stdin: stdin bytes, FIN: EOF
//     │  stdin before the start: held (reading pauses       │ DATA on resize: resize bytes
//     │    above `earlyStdinLimit`), handed over at start   │ SYN_STREAM: RST_STREAM REFUSED_STREAM
//     │  creationTimedOut ─────────────────────────────────────────────────────▶ closed (GOAWAY)
//     └─ a stream id not above the last one (a session error) ─────────────────▶ closed (GOAWAY)
//
// In every state a frame gets a defined answer, as spdystream expects of a peer:
// - SYN_STREAM without a known, expected, not yet opened `streamtype`: RST_STREAM PROTOCOL_ERROR;
//   an even stream id (the client's are odd): RST_STREAM PROTOCOL_ERROR; an id not above the last
//   one: GOAWAY PROTOCOL_ERROR (SPDY/3 §2.3.2).
// - DATA on a stream never opened: RST_STREAM INVALID_STREAM; on stdin after its FIN or reset:
//   RST_STREAM STREAM_ALREADY_CLOSED; on a stream the server writes (error, stdout, stderr):
//   ignored, since clients half-close those with an empty FIN.
// - SYN_REPLY (the server opens no streams) and HEADERS on a stream never opened: RST_STREAM
//   INVALID_STREAM.
// - PING with an odd id: echoed. SETTINGS, WINDOW_UPDATE (spdystream has no flow control) and
//   RST_STREAM on a stream other than stdin: nothing to do. RST_STREAM on stdin: stdin's EOF.
// - GOAWAY: the client is leaving; the connection closes.
// Bytes that are not SPDY at all (a bad frame, an unknown control type, a header block that does
// not inflate) never reach the machine: the handler answers them with GOAWAY PROTOCOL_ERROR.

/// The streams of SPDY remote command.
public enum SPDYStreamType: String, Hashable, Sendable, CaseIterable {
    /// Server → client: the status.
    case error
    /// Client → server.
    case stdin
    /// Server → client.
    case stdout
    /// Server → client.
    case stderr
    /// Client → server: terminal sizes as JSON.
    case resize
}

/// What the owner of a SPDY remote command connection must do, in order.
public enum SPDYStreamSetupAction: Hashable, Sendable {
    /// Answer a SYN_STREAM with an empty SYN_REPLY.
    case reply(streamID: UInt32)
    /// Send RST_STREAM with this status (`SPDY.RstStatus`).
    case resetStream(streamID: UInt32, status: UInt32)
    /// Send GOAWAY naming `lastGoodStreamID` with this status, then close the connection.
    case goAwayAndClose(lastGoodStreamID: UInt32, status: UInt32)
    /// Every expected stream is open: start the exec or attach session.
    case startSession
    /// Bytes for the process's stdin.
    case stdin(ByteBuffer)
    /// Stdin ended (FIN, or the client reset the stream).
    case stdinEnded
    /// Bytes of the resize stream.
    case resize(ByteBuffer)
    /// Echo this PING.
    case pong(id: UInt32)
    /// Stop reading the socket until the session starts (early stdin is above its limit).
    case pauseReading
    /// Read the socket again.
    case resumeReading
    /// Close the connection (the client said GOAWAY).
    case close
}

/// SPDY remote command stream set-up and routing for one connection, without I/O.
public struct SPDYStreamSetup: Sendable {
    /// GOAWAY statuses (SPDY/3 §2.6.6).
    public enum GoAwayStatus {
        /// A normal ending.
        public static let ok: UInt32 = 0
        /// The peer broke the protocol.
        public static let protocolError: UInt32 = 1
    }

    /// RST_STREAM STREAM_ALREADY_CLOSED (SPDY/3 §2.4.2).
    public static let streamAlreadyClosed: UInt32 = 9

    private enum State: Sendable {
        /// Streams are being opened; stdin that came early is held.
        case creating(earlyStdin: [ByteBuffer], earlyStdinBytes: Int, earlyStdinEnded: Bool, readingPaused: Bool)
        /// Every expected stream is open; the session runs.
        case started
        /// GOAWAY was sent or received: nothing more is done.
        case closed
    }

    /// The streams this session needs.
    public let expected: Set<SPDYStreamType>
    /// The most early stdin held before reading pauses.
    public let earlyStdinLimit: Int
    private var state: State = .creating(earlyStdin: [], earlyStdinBytes: 0, earlyStdinEnded: false, readingPaused: false)
    private var streamIDs: [SPDYStreamType: UInt32] = [:]
    private var types: [UInt32: SPDYStreamType] = [:]
    private var stdinClosed = false
    /// The highest stream id the client opened (for GOAWAY).
    public private(set) var lastStreamID: UInt32 = 0

    /// The streams a request needs: error always; stdin, stdout as asked; stderr unless a TTY
    /// merges it; resize with a TTY when the protocol version has it.
    public static func expectedStreams(stdin: Bool, stdout: Bool, stderr: Bool, tty: Bool, hasResizeStream: Bool) -> Set<SPDYStreamType> {
        var expected: Set<SPDYStreamType> = [.error]
        if stdin { expected.insert(.stdin) }
        if stdout { expected.insert(.stdout) }
        if stderr && !tty { expected.insert(.stderr) }
        if tty && hasResizeStream { expected.insert(.resize) }
        return expected
    }

    public init(expected: Set<SPDYStreamType>, earlyStdinLimit: Int = 1 << 20) {
        self.expected = expected
        self.earlyStdinLimit = earlyStdinLimit
    }

    /// The id of the stream of `type`, once the client opened it.
    public func streamID(of type: SPDYStreamType) -> UInt32? {
        self.streamIDs[type]
    }

    /// The stream types opened so far (for logs).
    public var openedTypes: [SPDYStreamType] {
        SPDYStreamType.allCases.filter { self.streamIDs[$0] != nil }
    }

    /// Whether the session has started.
    public var isStarted: Bool {
        switch self.state {
        case .started: return true
        case .creating, .closed: return false
        }
    }

    // MARK: Events

    /// A SYN_STREAM, its header block inflated.
    public mutating func synStreamReceived(streamID: UInt32, headers: [(name: String, value: String)], fin: Bool) -> [SPDYStreamSetupAction] {
        switch self.state {
        case .closed:
            return []
        case .started:
            guard streamID > self.lastStreamID else { return self.sessionError() }
            self.lastStreamID = streamID
            let status = streamID & 1 == 1 ? SPDY.RstStatus.refusedStream : SPDY.RstStatus.protocolError
            return [.resetStream(streamID: streamID, status: status)]
        case .creating(var early, var earlyBytes, var earlyEnded, let paused):
            guard streamID > self.lastStreamID else { return self.sessionError() }
            self.lastStreamID = streamID
            guard streamID & 1 == 1,
                let name = headers.first(where: { $0.name == "streamtype" })?.value,
                let type = SPDYStreamType(rawValue: name),
                self.expected.contains(type), self.streamIDs[type] == nil
            else {
                return [.resetStream(streamID: streamID, status: SPDY.RstStatus.protocolError)]
            }
            self.streamIDs[type] = streamID
            self.types[streamID] = type
            var actions: [SPDYStreamSetupAction] = [.reply(streamID: streamID)]
            if fin && type == .stdin {
                self.stdinClosed = true
                earlyEnded = true
            }
            guard Set(self.streamIDs.keys) == self.expected else {
                self.state = .creating(earlyStdin: early, earlyStdinBytes: earlyBytes, earlyStdinEnded: earlyEnded, readingPaused: paused)
                return actions
            }
            self.state = .started
            actions.append(.startSession)
            actions += early.map { .stdin($0) }
            early = []
            earlyBytes = 0
            if earlyEnded { actions.append(.stdinEnded) }
            if paused { actions.append(.resumeReading) }
            return actions
        }
    }

    /// A DATA frame.
    public mutating func dataReceived(streamID: UInt32, fin: Bool, payload: ByteBuffer) -> [SPDYStreamSetupAction] {
        if case .closed = self.state { return [] }
        guard let type = self.types[streamID] else {
            return [.resetStream(streamID: streamID, status: SPDY.RstStatus.invalidStream)]
        }
        switch type {
        case .stdin:
            guard !self.stdinClosed else {
                return [.resetStream(streamID: streamID, status: Self.streamAlreadyClosed)]
            }
            self.stdinClosed = fin
            return self.stdin(payload, ended: fin)
        case .resize:
            guard payload.readableBytes > 0, self.isStarted else { return [] }
            return [.resize(payload)]
        case .error, .stdout, .stderr:
            return []
        }
    }

    /// A RST_STREAM from the client.
    public mutating func resetReceived(streamID: UInt32) -> [SPDYStreamSetupAction] {
        guard self.types[streamID] == .stdin, !self.stdinClosed else { return [] }
        self.stdinClosed = true
        return self.stdin(ByteBuffer(), ended: true)
    }

    /// A SYN_REPLY (the server opens no streams, so none is expected) or a HEADERS frame, its
    /// header block inflated.
    public func headersReceived(streamID: UInt32, isReply: Bool) -> [SPDYStreamSetupAction] {
        if case .closed = self.state { return [] }
        guard !isReply, self.types[streamID] != nil else {
            return [.resetStream(streamID: streamID, status: SPDY.RstStatus.invalidStream)]
        }
        return []
    }

    /// A PING: the client's (odd ids) are echoed; ours (even) would be answers.
    public func pingReceived(id: UInt32) -> [SPDYStreamSetupAction] {
        if case .closed = self.state { return [] }
        return id & 1 == 1 ? [.pong(id: id)] : []
    }

    /// The client said GOAWAY.
    public mutating func goAwayReceived() -> [SPDYStreamSetupAction] {
        if case .closed = self.state { return [] }
        self.state = .closed
        return [.close]
    }

    /// The creation timeout fired.
    public mutating func creationTimedOut() -> [SPDYStreamSetupAction] {
        switch self.state {
        case .creating:
            self.state = .closed
            return [.goAwayAndClose(lastGoodStreamID: self.lastStreamID, status: GoAwayStatus.ok)]
        case .started, .closed:
            return []
        }
    }

    /// Bytes that are not SPDY: a session error.
    public mutating func malformedInput() -> [SPDYStreamSetupAction] {
        if case .closed = self.state { return [] }
        return self.sessionError()
    }

    /// The session ended (its status is written): say GOAWAY and close.
    public mutating func sessionEnded() -> [SPDYStreamSetupAction] {
        if case .closed = self.state { return [] }
        self.state = .closed
        return [.goAwayAndClose(lastGoodStreamID: self.lastStreamID, status: GoAwayStatus.ok)]
    }

    /// The connection is gone.
    public mutating func connectionClosed() {
        self.state = .closed
    }

    // MARK: Helpers

    private mutating func stdin(_ payload: ByteBuffer, ended: Bool) -> [SPDYStreamSetupAction] {
        switch self.state {
        case .closed:
            return []
        case .started:
            var actions: [SPDYStreamSetupAction] = []
            if payload.readableBytes > 0 { actions.append(.stdin(payload)) }
            if ended { actions.append(.stdinEnded) }
            return actions
        case .creating(var early, var earlyBytes, var earlyEnded, var paused):
            if payload.readableBytes > 0 {
                early.append(payload)
                earlyBytes += payload.readableBytes
            }
            earlyEnded = earlyEnded || ended
            var actions: [SPDYStreamSetupAction] = []
            if earlyBytes > self.earlyStdinLimit && !paused {
                paused = true
                actions.append(.pauseReading)
            }
            self.state = .creating(earlyStdin: early, earlyStdinBytes: earlyBytes, earlyStdinEnded: earlyEnded, readingPaused: paused)
            return actions
        }
    }

    private mutating func sessionError() -> [SPDYStreamSetupAction] {
        self.state = .closed
        return [.goAwayAndClose(lastGoodStreamID: self.lastStreamID, status: GoAwayStatus.protocolError)]
    }
}
