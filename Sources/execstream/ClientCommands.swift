import ArgumentParser
import CExecSys
import Dispatch
import ExecStreamClient
import ExecStreamCore
import ExecStreamHTTP2
import ExecStreamProtos
import ExecStreamServer
import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Where the client commands find the server, and how they prove who they are to it.
struct ServerOptions: ParsableArguments {
    /// The unix socket of `execstream serve`'s embedded default.
    static let defaultServer = "unix://" + ServerConfiguration.defaultUnixSocketPath

    @Option(
        name: .customLong("server"),
        help: """
            The server's control plane: unix:///path, or HOST:PORT (https://HOST:PORT) of a --control-listen \
            address with mutual TLS (default: $EXECSTREAM_SERVER, else \(ServerOptions.defaultServer)).
            """
    )
    var server: String?

    @Option(name: .customLong("tls-ca"), help: "CA certificates (PEM) the server's certificate is checked against (default: the system's).")
    var tlsCA: String?

    @Option(name: .customLong("tls-cert"), help: "This client's certificate chain (PEM), for mutual TLS.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "This client's private key (PEM).")
    var tlsKey: String?

    @Option(name: .customLong("tls-server-name"), help: "The name the server's certificate must carry (default: the host connected to).")
    var tlsServerName: String?

    func connect() async throws(ClientError) -> CRIClient {
        var text = self.server ?? ProcessInfo.processInfo.environment["EXECSTREAM_SERVER"] ?? Self.defaultServer
        var tls: ClientTLSConfiguration?
        if self.tlsCA != nil || self.tlsCert != nil || self.tlsKey != nil || self.tlsServerName != nil || text.hasPrefix("https://") {
            tls = ClientTLSConfiguration(caFile: self.tlsCA, certificateFile: self.tlsCert, keyFile: self.tlsKey, serverName: self.tlsServerName)
        }
        for scheme in ["https://", "http://"] where text.hasPrefix(scheme) {
            text = String(text.dropFirst(scheme.count))
        }
        let address: ListenAddress
        do {
            address = try ListenAddress(parsing: text)
        } catch {
            throw ClientError(code: .unavailable, message: "invalid --server \(text): \(error.message)")
        }
        do {
            return CRIClient(connection: try await HTTP2ClientConnection.connect(to: address, tls: tls))
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(code: .unavailable, message: "cannot connect to \(text): \(ConnectFailure.describe(error))")
        }
    }
}

/// Why a connection could not be made, in a person's words: the system's reason, never a
/// library's type names, and what to check when nothing is listening.
enum ConnectFailure {
    static func describe(_ error: any Error) -> String {
        guard let code = self.errno(of: error) else { return "\(error)" }
        switch code {
        case ECONNREFUSED:
            return "connection refused (is execstream serve running?)"
        case ENOENT:
            return "no such socket (is execstream serve running?)"
        case EACCES, EPERM:
            return "permission denied (is the socket's group yours? see --socket-group)"
        case ETIMEDOUT:
            return "timed out"
        case EHOSTUNREACH, ENETUNREACH:
            return "no route to the host"
        default:
            return String(cString: strerror(code)).lowercased()
        }
    }

    /// The errno behind a connect failure, through NIO's wrappers.
    private static func errno(of error: any Error) -> Int32? {
        switch error {
        case let error as IOError:
            return error.errnoCode
        case let error as NIOConnectionError:
            return error.connectionErrors.lazy.compactMap { Self.errno(of: $0.error) }.first
        default:
            return nil
        }
    }
}

/// `CONTAINER -- COMMAND [ARG...]`, as exec and exec-sync take it (the `--` may be left out).
struct ContainerCommand: ParsableArguments {
    @Argument(help: "The container's id or name.")
    var container: String

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.")
    var command: [String] = []

    /// The command without the leading `--`; a usage error if there is none.
    func commandLine(verb: String) throws -> [String] {
        let command = self.command.first == "--" ? Array(self.command.dropFirst()) : self.command
        guard !command.isEmpty else {
            throw ValidationError("a command is needed: execstream \(verb) CONTAINER -- COMMAND [ARG...]")
        }
        return command
    }
}

/// `execstream exec`: run a command in a container, streaming its IO, and exit with its code.
struct ExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in a container; the exit code is the command's.",
        discussion: "Example: execstream exec demo -- sh -c 'echo hi; exit 3'"
    )

    @OptionGroup var server: ServerOptions

    @Flag(name: [.customShort("i"), .customLong("stdin")], help: "Pass stdin to the command.")
    var interactive = false

    @Flag(name: [.customShort("t"), .customLong("tty")], help: "Run the command on a terminal (raw mode here, resizes follow).")
    var tty = false

    @OptionGroup var target: ContainerCommand

    func run() async throws {
        let command = try self.target.commandLine(verb: "exec")
        let code = await ClientFailure.reporting {
            let client = try await self.server.connect()
            let request = Runtime_V1_ExecRequest.with {
                $0.containerID = self.target.container
                $0.cmd = command
                $0.tty = self.tty
                $0.stdin = self.interactive
                $0.stdout = true
                $0.stderr = !self.tty
            }
            let url = try await client.exec(request).url
            let session = RemoteTerminalSession(tty: self.tty, stdin: self.interactive)
            let stream = try await NativeStreamClient.open(url: url, on: client.connection, terminalSize: session.initialTerminalSize)
            return try await session.run(ExecStream(stream: stream))
        }
        throw ExitCode(code)
    }
}

/// `execstream attach`: join a container's main process (its output, and with -i its stdin).
struct AttachCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Attach to a container's main process; ends when it exits or on ^C without -i.",
        discussion: """
            Leaving never stops the main process; its output waits for the next attach. A dropped \
            connection is re-established with exponential backoff, and the output goes on with no \
            gap and no duplicate.
            """
    )

    @OptionGroup var server: ServerOptions

    @Flag(name: [.customShort("i"), .customLong("stdin")], help: "Pass stdin to the main process.")
    var interactive = false

    @Flag(name: [.customShort("t"), .customLong("tty")], help: "The main process has a terminal: raw mode here, resizes follow.")
    var tty = false

    @Option(
        name: .customLong("reconnect-timeout"),
        help: "Seconds to keep reconnecting after the connection drops (0: do not reconnect)."
    )
    var reconnectTimeout: Double = 30

    @Argument(help: "The container's id or name.")
    var container: String

    func validate() throws {
        guard self.reconnectTimeout >= 0, self.reconnectTimeout.isFinite else {
            throw ValidationError("--reconnect-timeout must be 0 or more seconds")
        }
    }

    func run() async throws {
        let code = await ClientFailure.reporting {
            let request = Runtime_V1_AttachRequest.with {
                $0.containerID = self.container
                $0.tty = self.tty
                $0.stdin = self.interactive
                $0.stdout = true
                $0.stderr = !self.tty
            }
            let session = RemoteTerminalSession(tty: self.tty, stdin: self.interactive)
            let server = self.server
            let attach = ResumableAttachClient(
                request: request,
                terminalSize: session.initialTerminalSize,
                policy: .init(giveUpAfter: .milliseconds(Int64(self.reconnectTimeout * 1000))),
                connect: { () async throws(ClientError) -> CRIClient in try await server.connect() }
            )
            return try await session.run(ReconnectingAttachStream(client: attach, reportsReconnects: !session.usesLocalTerminal))
        }
        throw ExitCode(code)
    }
}

/// `execstream exec-sync`: run a command to completion and print what it wrote (CRI ExecSync).
struct ExecSyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec-sync",
        abstract: "Run a command to completion and print its output; the exit code is the command's."
    )

    @OptionGroup var server: ServerOptions

    @Option(name: .customLong("timeout"), help: "Seconds before the command is killed (0: no limit).")
    var timeout: Int64 = 0

    @Flag(name: .customLong("json"), help: "Print one JSON object: exit code, stdout, stderr, truncation.")
    var json = false

    @OptionGroup var target: ContainerCommand

    func run() async throws {
        let command = try self.target.commandLine(verb: "exec-sync")
        guard self.timeout >= 0 else { throw ValidationError("--timeout must be 0 or more seconds") }
        let json = self.json
        let code = await ClientFailure.reporting(json: json) {
            let client = try await self.server.connect()
            let request = Runtime_V1_ExecSyncRequest.with {
                $0.containerID = self.target.container
                $0.cmd = command
                $0.timeout = self.timeout
            }
            let (response, trailers) = try await client.execSync(request)
            if json {
                let object: [String: Any] = [
                    "exitCode": Int(response.exitCode),
                    "stdout": String(decoding: response.stdout, as: UTF8.self),
                    "stderr": String(decoding: response.stderr, as: UTF8.self),
                    "stdoutDroppedBytes": Int(trailers[first: "execstream-stdout-dropped-bytes"] ?? "0") ?? 0,
                    "stderrDroppedBytes": Int(trailers[first: "execstream-stderr-dropped-bytes"] ?? "0") ?? 0,
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                StandardIO.write(Array(data) + [0x0A], to: STDOUT_FILENO)
            } else {
                StandardIO.write(Array(response.stdout), to: STDOUT_FILENO)
                StandardIO.write(Array(response.stderr), to: STDERR_FILENO)
            }
            return Int32(response.exitCode)
        }
        throw ExitCode(code)
    }
}

/// Turns failures into one clear line (or one JSON object) and exit code 1, or a shell's 126 or
/// 127 for a command that could not start.
enum ClientFailure {
    /// gRPC's status codes by number, in the snake case of their canonical names.
    static func grpcCodeName(_ status: Int) -> String? {
        let names = [
            "ok", "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied",
            "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable",
            "data_loss", "unauthenticated",
        ]
        return names.indices.contains(status) ? names[status] : nil
    }

    static func reporting(json: Bool = false, _ body: () async throws -> Int32) async -> Int32 {
        do {
            return try await body()
        } catch {
            let failure = error as? ClientError ?? ClientError(code: .unavailable, message: "\(error)")
            if json {
                // A gRPC status says what the server meant: not_found, permission_denied, …
                let code = failure.grpcStatus.flatMap(Self.grpcCodeName) ?? failure.code.rawValue
                let object: [String: Any] = ["error": ["code": code, "message": failure.message]]
                if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                    StandardIO.write(Array(data) + [0x0A], to: STDOUT_FILENO)
                }
            } else {
                StandardIO.write(Array("execstream: \(failure.message)\n".utf8), to: STDERR_FILENO)
            }
            return failure.exitCode ?? 1
        }
    }
}

/// Writes to the process's own stdout and stderr, whole buffers, blocking.
enum StandardIO {
    static func write(_ bytes: [UInt8], to fd: Int32) {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }

    static func write(_ buffer: ByteBuffer, to fd: Int32) {
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
