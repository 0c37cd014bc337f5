public import ExecStreamCore
public import ExecStreamProtos
public import NIOCore

/// An exec whose stdin is under the server's credit (`execstream-stdin-credit: 1`, PROTOCOLS.md
/// §9): `stdinTaken` says when the process's stdin channel has everything sent so far, or that
/// it never will. It is
/// what a console started by exec runs over (`ConsoleSession`), where typing must wait for the
/// terminal. An exec ends with its stream: it is never taken up again, and leaving it (cancelling
/// `run`) resets the stream, so the server kills the process group.
public final class CreditedExecClient: ConsoleTerminal {
    private let stream: NativeStreamClient
    /// The exec's stdin (`sendStdin`, `stdinTaken`, `closeStdin`).
    public let stdin = CreditedStdin()

    private init(stream: NativeStreamClient) {
        self.stream = stream
    }

    /// Asks `client` for an exec of `request` and opens its stream on the same connection, with
    /// `terminalSize` applied before the process starts.
    public static func open(_ request: Runtime_V1_ExecRequest, client: CRIClient, terminalSize: TerminalSize? = nil) async throws(ClientError)
        -> CreditedExecClient
    {
        let url = try await client.exec(request).url
        return CreditedExecClient(stream: try await NativeStreamClient.open(url: url, on: client.connection, terminalSize: terminalSize, stdinCredit: true))
    }

    /// Streams until the command's status arrives, handing each output byte to `output` in
    /// order. `onReconnect` is never called: an exec is not taken up again.
    public func run(output: (StandardStream, ByteBuffer) async -> Void, onReconnect: (ClientError) -> Void = { _ in }) async throws(ClientError)
        -> RemoteCommandResult
    {
        let sender = self.stdin.sending(on: self.stream)
        defer {
            sender.cancel()
            self.stdin.finish()
        }
        let stream = self.stream
        let result = await withTaskCancellationHandler { () async -> Result<RemoteCommandResult, ClientError> in
            do throws(ClientError) {
                return .success(try await self.receive(output: output))
            } catch {
                return .failure(error)
            }
        } onCancel: {
            stream.cancel()
        }
        return try result.get()
    }

    private func receive(output: (StandardStream, ByteBuffer) async -> Void) async throws(ClientError) -> RemoteCommandResult {
        try await self.stream.receiveFrames(
            { frame in
                switch frame {
                case .data(.stdout, let payload):
                    await output(.stdout, payload)
                case .data(.stderr, let payload):
                    await output(.stderr, payload)
                case .stdinWindow(let taken, let limit):
                    self.stdin.window(taken: taken, limit: limit)
                case .close(.stdin):
                    self.stdin.closedByServer()
                case .data(.stdin, _), .data(.resize, _), .data(.error, _), .close, .position, .acknowledge:
                    break
                }
            },
            afterEachChunk: {},
            onHead: { headers in
                guard headers[first: "execstream-stdin-credit"] == "1" else {
                    throw ClientError(code: .protocolError, message: "the server does not offer stdin credit")
                }
            }
        )
    }
}
