public import ExecStreamCore
import ExecStreamHTTP2
public import ExecStreamProtos
public import NIOCore
import Synchronization

/// An attach to a container's main process that survives dropped connections (PROTOCOLS.md §9,
/// "Resumable attach"): when the connection breaks it connects again with exponential backoff,
/// asks for a new attach URL and goes on, with no gap and no duplicate in the output and none in
/// stdin.
///
/// Output: the server sends each delivery after a position frame and counts it delivered only
/// once this client acknowledges it; what was unconfirmed when the connection broke comes again,
/// and an `OutputResumeCursor` per stream drops what was already passed on. Stdin: bytes stay in
/// a `StdinReplayBuffer` until the server's stdin window says the container has them, and a new
/// connection sends on from the offset the server names.
public final class ResumableAttachClient: Sendable {
    /// How reconnecting paces itself and when it gives up.
    public struct ReconnectPolicy: Hashable, Sendable {
        /// The wait before the first reconnect; each failure doubles it.
        public var initialDelay: Duration
        /// The longest wait between attempts.
        public var maximumDelay: Duration
        /// Give up once the connection has been down this long (zero: never reconnect).
        public var giveUpAfter: Duration

        /// 50 ms, doubling up to 2 s, for up to `giveUpAfter` (30 s by default).
        public init(initialDelay: Duration = .milliseconds(50), maximumDelay: Duration = .seconds(2), giveUpAfter: Duration = .seconds(30)) {
            self.initialDelay = initialDelay
            self.maximumDelay = maximumDelay
            self.giveUpAfter = giveUpAfter
        }
    }

    /// Opens a new connection to the server.
    public typealias Connector = @Sendable () async throws(ClientError) -> CRIClient

    private struct State {
        var terminalSize: TerminalSize?
        var stream: NativeStreamClient?
        /// Connections that broke and were replaced.
        var reconnectCount = 0
    }

    /// Stdin bytes held at most before `sendStdin` waits (the server's window bounds what is on
    /// the wire; this bounds what waits for it).
    public static let maxBufferedStdinBytes = CreditedStdin.maxBufferedBytes

    private let connect: Connector
    private let request: Runtime_V1_AttachRequest
    private let policy: ReconnectPolicy
    private let state: Mutex<State>
    /// Stdin, kept until the container's channel has it, across connections (`sendStdin`,
    /// `stdinTaken`, `closeStdin`).
    public let stdin = CreditedStdin()

    /// An attach described by `request` (its stdin, stdout, stderr and tty flags), over
    /// connections made by `connect`. `terminalSize` is applied before the first output.
    public init(request: Runtime_V1_AttachRequest, terminalSize: TerminalSize? = nil, policy: ReconnectPolicy = ReconnectPolicy(), connect: @escaping Connector) {
        self.request = request
        self.policy = policy
        self.connect = connect
        var state = State()
        state.terminalSize = terminalSize
        self.state = Mutex(state)
    }

    /// Connections that broke and were replaced so far.
    public var reconnectCount: Int { self.state.withLock { $0.reconnectCount } }

    /// Resizes the terminal (now, and on every connection after).
    public func resize(_ size: TerminalSize) async {
        let stream = self.state.withLock { state -> NativeStreamClient? in
            state.terminalSize = size
            return state.stream
        }
        try? await stream?.resize(size)
    }

    /// Streams until the main process's status arrives, reconnecting as needed; hands each output
    /// byte to `output` once, in order. Throws when a connection cannot be made again within the
    /// policy, or the server refuses the attach. Only a connection that once worked is retried: a
    /// server that cannot be reached at all is an error at once, not 30 seconds of retries.
    public func run(output: (StandardStream, ByteBuffer) async -> Void, onReconnect: (ClientError) -> Void = { _ in }) async throws(ClientError)
        -> RemoteCommandResult
    {
        var cursors: [StandardStream: OutputResumeCursor] = [.stdout: OutputResumeCursor(), .stderr: OutputResumeCursor()]
        var delay = self.policy.initialDelay
        var downSince: ContinuousClock.Instant?
        defer { self.stdin.finish() }
        var reconnecting = false
        var everConnected = false
        while true {
            var connected = false
            do {
                return try await self.runConnection(cursors: &cursors, output: output, reconnecting: reconnecting, connected: &connected)
            } catch let failure {
                everConnected = everConnected || connected
                guard everConnected, Self.isRetriable(failure) else { throw failure }
                if connected {
                    delay = self.policy.initialDelay
                    downSince = nil
                }
                let now = ContinuousClock.now
                let since = downSince ?? now
                downSince = since
                guard now - since + delay <= self.policy.giveUpAfter else { throw failure }
                self.state.withLock { $0.reconnectCount += 1 }
                onReconnect(failure)
                // Backoff between attempts: a pause on purpose, not a wait for an event.
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, self.policy.maximumDelay)
                reconnecting = true
            }
        }
    }

    /// One connection, from connecting to the status (returned) or a failure (thrown).
    private func runConnection(
        cursors: inout [StandardStream: OutputResumeCursor],
        output: (StandardStream, ByteBuffer) async -> Void,
        reconnecting: Bool,
        connected: inout Bool
    ) async throws(ClientError) -> RemoteCommandResult {
        let client = try await self.connect()
        let connection = client.connection
        let url: String
        do {
            url = try await client.attach(self.request).url
        } catch where reconnecting && error.grpcStatus == 9 {
            // FAILED_PRECONDITION on a reconnect: if the main process exited, every byte of its
            // output was acknowledged (the server still attaches while any is left) and only end
            // of stream and the status were lost with the connection. An attach's status is Success when the main
            // process exits, whatever its code.
            defer { Task { await connection.close() } }
            guard try await self.mainProcessExited(client) else { throw error }
            return RemoteCommandResult(exitCode: 0, message: "")
        }
        let size = self.state.withLock { $0.terminalSize }
        let stream = try await NativeStreamClient.open(url: url, on: connection, terminalSize: size, resumable: true)
        self.state.withLock { $0.stream = stream }
        for stream in [StandardStream.stdout, .stderr] {
            cursors[stream]?.connectionStarted()
        }
        let sender = self.stdin.sending(on: stream)
        defer {
            sender.cancel()
            self.state.withLock { state in
                if state.stream === stream {
                    state.stream = nil
                }
            }
            Task { await connection.close() }
        }
        var acknowledged: [StandardStream: UInt64] = [:]
        return try await stream.receiveFrames(
            { frame in
                switch frame {
                case .position(let channel, let offset):
                    cursors[Self.standardStream(channel)]?.position(offset)
                case .data(.stdout, let payload):
                    if let fresh = cursors[.stdout]?.received(payload) {
                        await output(.stdout, fresh)
                    }
                case .data(.stderr, let payload):
                    if let fresh = cursors[.stderr]?.received(payload) {
                        await output(.stderr, fresh)
                    }
                case .stdinWindow(let taken, let limit):
                    self.stdin.window(taken: taken, limit: limit)
                case .close(.stdin):
                    self.stdin.closedByServer()
                case .data(.stdin, _), .data(.resize, _), .data(.error, _), .close, .acknowledge:
                    break
                }
            },
            afterEachChunk: {
                for standardStream in [StandardStream.stdout, .stderr] {
                    guard let offset = cursors[standardStream]?.acknowledgeableOffset, acknowledged[standardStream].map({ offset > $0 }) ?? true
                    else { continue }
                    acknowledged[standardStream] = offset
                    try await stream.send(.acknowledge(standardStream == .stderr ? .stderr : .stdout, offset: offset))
                }
            },
            onHead: { headers in
                guard headers[first: "execstream-resumable"] == "1" else {
                    throw ClientError(code: .protocolError, message: "the server does not offer resumable attach")
                }
                connected = true
            }
        )
    }

    /// Whether the container's status says its main process has exited.
    private func mainProcessExited(_ client: CRIClient) async throws(ClientError) -> Bool {
        try await client.containerStatus(.with { $0.containerID = self.request.containerID }).status.state == .containerExited
    }

    private static func standardStream(_ channel: RemoteCommandChannel) -> StandardStream {
        channel == .stderr ? .stderr : .stdout
    }

    /// A broken or refused connection is worth another attempt; an answer from the server (an
    /// unknown container, a refused request, a protocol mismatch) is not.
    static func isRetriable(_ error: ClientError) -> Bool {
        if error.code == .unavailable { return true }
        return error.code == .rpcFailed && error.grpcStatus == 14
    }
}
