import ExecStreamClient
import ExecStreamCore
import ExecStreamHTTP2
import ExecStreamProtos
import ExecStreamServer
import Logging
import NIOCore
import Testing
import Foundation

/// An `ExecStreamServer` on 127.0.0.1 port 0 (the data plane) and a unix socket of its own (both
/// planes), for the duration of a test body, with a client connected to the socket.
struct InProcessServer {
    let server: ExecStreamServer
    /// The unix socket: control calls and streams.
    let address: ListenAddress
    /// The TCP listener: streams and health only.
    let dataAddress: ListenAddress?
    let client: CRIClient
    /// Live channels once started: the containers' main processes' stdio.
    let baselineChannelCount: Int

    /// What one exec produced.
    struct ExecOutput {
        var stdout = ByteBuffer()
        var stderr = ByteBuffer()
        var result: RemoteCommandResult
        var stdoutText: String { String(buffer: self.stdout) }
    }

    static func with<Result>(
        configuration: ServerConfiguration = ServerConfiguration(listenAddresses: [.tcp(host: "127.0.0.1", port: 0)]),
        _ body: (InProcessServer) async throws -> Result
    ) async throws -> Result {
        var configuration = configuration
        let directory = try TemporaryDirectory()
        if !configuration.listenAddresses.contains(where: { if case .unix = $0 { true } else { false } }) {
            configuration.listenAddresses.append(.unix(path: directory.path + "/execstream.sock"))
        }
        let (addresses, continuation) = AsyncStream<[BoundListener]>.makeStream()
        var logger = Logger(label: "execstream-test")
        logger.logLevel = .warning
        let server = ExecStreamServer(configuration: configuration, logger: logger, onListening: { continuation.yield($0) })
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            defer { group.cancelAll() }
            var iterator = addresses.makeAsyncIterator()
            guard let bound = await iterator.next(), let address = bound.first(where: { $0.access.servesControlPlane })?.address else {
                throw ClientError(code: .unavailable, message: "the server did not start")
            }
            let connection = try await HTTP2ClientConnection.connect(to: address)
            let running = InProcessServer(
                server: server,
                address: address,
                dataAddress: bound.first { !$0.access.servesControlPlane }?.address,
                client: CRIClient(connection: connection),
                baselineChannelCount: server.liveChannelCount
            )
            let result = try await body(running)
            await connection.close()
            return result
        }
    }

    /// Runs `command` in the demo container over the native stream and collects everything.
    func exec(
        _ command: [String],
        stdin: ByteBuffer? = nil,
        tty: Bool = false,
        terminalSize: TerminalSize? = nil,
        on connection: HTTP2ClientConnection? = nil
    ) async throws -> ExecOutput {
        let client = connection.map { CRIClient(connection: $0) } ?? self.client
        let request = Runtime_V1_ExecRequest.with {
            $0.containerID = "demo"
            $0.cmd = command
            $0.tty = tty
            $0.stdin = stdin != nil
            $0.stdout = true
            $0.stderr = !tty
        }
        let url = try await client.exec(request).url
        let stream = try await NativeStreamClient.open(url: url, on: client.connection, terminalSize: terminalSize)
        if let stdin {
            var rest = stdin
            while let chunk = rest.readSlice(length: min(rest.readableBytes, 32 << 10)), chunk.readableBytes > 0 {
                try await stream.sendStdin(chunk)
            }
            try await stream.closeStdin()
        }
        var stdout = ByteBuffer()
        var stderr = ByteBuffer()
        let result = try await stream.receive { which, bytes in
            if which == .stderr {
                stderr.writeImmutableBuffer(bytes)
            } else {
                stdout.writeImmutableBuffer(bytes)
            }
        }
        return ExecOutput(stdout: stdout, stderr: stderr, result: result)
    }

    /// Every IOChannel of a finished exec is gone by the time its client has the status (only the
    /// main processes' channels are left): output
    /// channels are removed as end of stream is acknowledged, before the status is written, and
    /// stdin's when the process read it to end of file.
    func expectNoLiveChannels(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(self.server.liveChannelCount == self.baselineChannelCount, sourceLocation: sourceLocation)
    }
}

/// A directory of its own under /tmp (short enough for socket paths), removed when released.
final class TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        var template = Array("/tmp/execstream-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ClientError(code: .unavailable, message: "mkdtemp failed") }
        self.path = String(cString: made)
    }

    deinit {
        _ = try? FileManager.default.removeItem(atPath: self.path)
    }
}
