public import ExecStreamCore
public import ExecStreamHTTP2
import Foundation
public import NIOCore

/// How a remote command ended, as the client learned it.
public struct RemoteCommandResult: Hashable, Sendable {
    /// The command's exit code (0–255); when it could not start, what a shell reports for that
    /// (127: no such command, 126: it cannot run); nil when it failed for another reason.
    public var exitCode: UInt8?
    /// The status message ("" for success).
    public var message: String
    /// Whether the command ran. When it did not, `message` says why.
    public var started: Bool

    public init(exitCode: UInt8?, message: String, started: Bool = true) {
        self.exitCode = exitCode
        self.message = message
        self.started = started
    }
}

/// The client side of one native HTTP/2 exec or attach stream (PROTOCOLS.md §9).
///
/// Output arrives through `receive`; stdin and resizes go out as frames at any time. Stdin is
/// closed with a close frame, so resizes can still follow; the request ends once the status is in.
public final class NativeStreamClient: Sendable {
    /// The media type of the native format.
    public static let contentType = "application/vnd.execstream.v1"

    private let stream: HTTP2ClientStream

    private init(stream: HTTP2ClientStream) {
        self.stream = stream
    }

    /// Opens the stream at `url`'s path on `connection` (the server that issued the URL).
    /// `terminalSize` is applied before the process starts. `resumable` asks for a resumable
    /// attach, `stdinCredit` for stdin window frames (PROTOCOLS.md §9): `ResumableAttachClient`
    /// and `CreditedExecClient` speak them.
    public static func open(
        url: String,
        on connection: HTTP2ClientConnection,
        terminalSize: TerminalSize? = nil,
        resumable: Bool = false,
        stdinCredit: Bool = false
    ) async throws(ClientError) -> NativeStreamClient {
        guard let components = URLComponents(string: url), !components.path.isEmpty else {
            throw ClientError(code: .protocolError, message: "the server returned an invalid streaming URL: \(url)")
        }
        var headers = [HTTP2ClientHeader("content-type", Self.contentType)]
        if let terminalSize {
            headers.append(HTTP2ClientHeader("execstream-terminal-size", "\(terminalSize.width)x\(terminalSize.height)"))
        }
        if resumable {
            headers.append(HTTP2ClientHeader("execstream-resumable", "1"))
        }
        if stdinCredit {
            headers.append(HTTP2ClientHeader("execstream-stdin-credit", "1"))
        }
        do {
            return NativeStreamClient(stream: try await connection.makeStream(method: "POST", path: components.path, headers: headers))
        } catch {
            throw ClientError(code: .unavailable, message: "cannot open \(url): \(error)")
        }
    }

    /// Sends stdin bytes (suspends while the server's window is full).
    public func sendStdin(_ bytes: ByteBuffer) async throws {
        try await self.send(.data(.stdin, bytes))
    }

    /// Ends stdin: the process's stdin closes after every byte sent before.
    public func closeStdin() async throws {
        try await self.send(.close(.stdin))
    }

    /// Resizes the terminal.
    public func resize(_ size: TerminalSize) async throws {
        try await self.send(.data(.resize, ByteBuffer(string: #"{"Width":\#(size.width),"Height":\#(size.height)}"#)))
    }

    /// Gives up on the command: resets the stream (the server kills an exec's process group).
    public func cancel() {
        self.stream.reset()
    }

    /// Reads the response to its end, handing stdout and stderr bytes to `output` in order.
    public func receive(output: (StandardStream, ByteBuffer) async throws -> Void) async throws(ClientError) -> RemoteCommandResult {
        try await self.receiveFrames(
            { frame in
                switch frame {
                case .data(.stdout, let payload):
                    try await output(.stdout, payload)
                case .data(.stderr, let payload):
                    try await output(.stderr, payload)
                case .data(.stdin, _), .data(.resize, _), .data(.error, _), .close, .position, .acknowledge, .stdinWindow:
                    break
                }
            },
            afterEachChunk: {}
        )
    }

    /// Reads the response to its end, handing every frame but the status to `handle`, and calling
    /// `afterEachChunk` once the frames of each body chunk are handled. `onHead` sees the
    /// response headers of a 200.
    public func receiveFrames(
        _ handle: (NativeFrame) async throws -> Void,
        afterEachChunk: () async throws -> Void,
        onHead: ([HTTP2ClientHeader]) throws -> Void = { _ in }
    ) async throws(ClientError) -> RemoteCommandResult {
        var decoder = NativeFrameDecoder()
        var buffered = ByteBuffer()
        var status: ByteBuffer?
        var trailers: [HTTP2ClientHeader] = []
        do {
            for try await event in self.stream.response {
                switch event {
                case .head(let code, let headers):
                    guard code == 200 else {
                        throw ClientError(code: .streamRefused, message: "the streaming endpoint answered HTTP \(code)")
                    }
                    guard headers[first: "content-type"] == Self.contentType else {
                        throw ClientError(code: .protocolError, message: "the streaming endpoint does not speak \(Self.contentType)")
                    }
                    try onHead(headers)
                case .data(let chunk):
                    buffered.writeImmutableBuffer(chunk)
                    while let frame = try decoder.decode(buffer: &buffered) {
                        if case .data(.error, let payload) = frame {
                            status = payload
                        } else {
                            try await handle(frame)
                        }
                    }
                    buffered.discardReadBytes()
                    try await afterEachChunk()
                case .trailers(let fields):
                    trailers = fields
                }
            }
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(code: .unavailable, message: "the stream broke: \(error)")
        }
        self.stream.finish()
        return try Self.result(status: status, trailers: trailers)
    }

    /// Sends one frame of the request body (suspends while the server's window is full).
    public func send(_ frame: NativeFrame) async throws {
        var buffer = ByteBuffer()
        NativeFrameEncoder.encode(frame, into: &buffer)
        try await self.stream.write(buffer)
    }

    /// The exit code from the trailers (or the status's ExitCode cause), and the status message.
    static func result(status: ByteBuffer?, trailers: [HTTP2ClientHeader]) throws(ClientError) -> RemoteCommandResult {
        let json = status.map { Data($0.readableBytesView) } ?? trailers[first: "execstream-status"].map { Data($0.utf8) }
        guard let json, let object = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else {
            throw ClientError(code: .protocolError, message: "the stream ended without a status")
        }
        let message = object["message"] as? String ?? ""
        if object["status"] as? String == "Success" {
            return RemoteCommandResult(exitCode: 0, message: message)
        }
        if let code = trailers[first: "execstream-exit-code"].flatMap({ UInt8($0) }) {
            return RemoteCommandResult(exitCode: code, message: message)
        }
        let causes = ((object["details"] as? [String: Any])?["causes"] as? [[String: Any]]) ?? []
        let exitCode = causes.first { $0["reason"] as? String == "ExitCode" }.flatMap { ($0["message"] as? String).flatMap { UInt8($0) } }
        guard object["reason"] as? String != "NonZeroExitCode" else {
            return RemoteCommandResult(exitCode: exitCode, message: message)
        }
        // An exit code beside an internal error is a shell's code for a command that could not
        // start; the other cause says why, without the kubelet's "Internal error occurred".
        let reason = exitCode == nil ? nil : causes.first { $0["reason"] == nil }?["message"] as? String
        return RemoteCommandResult(exitCode: exitCode, message: reason ?? message, started: false)
    }
}
