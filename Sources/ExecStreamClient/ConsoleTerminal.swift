public import ExecStreamCore
public import NIOCore

/// A terminal a console runs over: its output, and stdin under the server's credit, which says
/// when what was typed was taken (`ResumableAttachClient` for an attach, `CreditedExecClient`
/// for an exec).
public protocol ConsoleTerminal: Sendable {
    /// The terminal's stdin.
    var stdin: CreditedStdin { get }
    /// Streams output until the terminal's process ends; `onReconnect` hears of each dropped
    /// connection that was taken up again.
    func run(output: (StandardStream, ByteBuffer) async -> Void, onReconnect: (ClientError) -> Void) async throws(ClientError) -> RemoteCommandResult
}

extension ConsoleTerminal {
    /// Queues stdin bytes; waits while `CreditedStdin.maxBufferedBytes` already wait for the
    /// server.
    public func sendStdin(_ bytes: ByteBuffer) async {
        await self.stdin.send(bytes)
    }

    /// Waits until the terminal's stdin channel has taken every byte queued so far, they never
    /// will be (stdin was closed, or the terminal ended first), or `deadline` passes. What a
    /// console needs before it types more.
    @discardableResult
    public func stdinTaken(before deadline: ContinuousClock.Instant? = nil) async -> CreditedStdin.Outcome {
        await self.stdin.taken(before: deadline)
    }

    /// Ends stdin after every byte queued before.
    public func closeStdin() {
        self.stdin.close()
    }
}

extension ResumableAttachClient: ConsoleTerminal {}
