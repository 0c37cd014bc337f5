import ExecStreamCore
import ExecStreamRemoteCommand
import GRPCCore
import Logging

/// The audit log: one line (level notice, `audit=true`) for every control call that runs or
/// reaches something, and one at every session's end. Each names the peer (its identity,
/// never a secret), the container and the command (bounded, as `CommandLineLimits.displayed`);
/// a session's line also the Kubernetes audit ID of its request, when it came with one.
/// Never a token, never a byte of stdin or output.
struct AuditLog: SessionObserver {
    private let logger: Logger

    init(logger: Logger) {
        var logger = logger
        logger[metadataKey: "audit"] = .stringConvertible(true)
        self.logger = logger
    }

    /// A control call that ran, or reached, something.
    func call(
        _ method: String,
        context: ServerContext,
        container: String?,
        command: [String]? = nil,
        outcome: String,
        _ extra: Logger.Metadata = [:]
    ) {
        var metadata: Logger.Metadata = ["event": "call", "method": "\(method)", "peer": "\(Self.peer(context))", "outcome": "\(outcome)"]
        if let container { metadata["container"] = "\(container)" }
        if let command { metadata["command"] = "\(Self.displayed(command))" }
        metadata.merge(extra) { _, new in new }
        self.logger.notice("control call", metadata: metadata)
    }

    // MARK: SessionObserver

    func sessionStarted(_ session: ObservedSession) {}
    func transferred(_ byteCount: Int, of stream: StandardStream, in session: ObservedSession) {}
    func firstOutput(after latency: Duration, in session: ObservedSession) {}
    func processSpawned(after latency: Duration, in session: ObservedSession) {}
    func processExited(_ status: ProcessExitStatus, in session: ObservedSession) {}

    func sessionEnded(_ session: ObservedSession, _ end: ObservedSessionEnd) {
        var metadata: Logger.Metadata = [
            "event": "session",
            "kind": "\(session.kind.rawValue)",
            "transport": "\(session.transport)",
            "peer": "\(session.peer)",
            "container": "\(session.containerID)",
            "outcome": "\(end.outcomeLabel)",
            "durationMs": .stringConvertible(Int(end.duration / .milliseconds(1))),
        ]
        switch session.kind {
        case .portForward:
            metadata["bytesToService"] = .stringConvertible(end.bytes[.stdin] ?? 0)
            metadata["bytesFromService"] = .stringConvertible(end.bytes[.stdout] ?? 0)
        case .exec, .attach, .containerdStream:
            metadata["stdinBytes"] = .stringConvertible(end.bytes[.stdin] ?? 0)
            metadata["stdoutBytes"] = .stringConvertible(end.bytes[.stdout] ?? 0)
            metadata["stderrBytes"] = .stringConvertible(end.bytes[.stderr] ?? 0)
        }
        if let command = session.command {
            metadata["command"] = "\(Self.displayed(command))"
        }
        if let auditID = session.auditID {
            metadata["auditID"] = "\(auditID)"
        }
        switch end.outcome {
        case .status(.exited(let code)), .status(.notStarted(let code, _)):
            metadata["exitCode"] = .stringConvertible(Int(code))
        case .status(.internalError), .status(.preempted), .clientGone, .closed, .failed:
            break
        }
        self.logger.notice("session ended", metadata: metadata)
    }

    // MARK: Fields

    static func peer(_ context: ServerContext) -> String {
        (context.transportSpecific as? ConnectionPeer).map { "\($0.identity)" } ?? "unknown"
    }

    /// A command as an audit line shows it: each argument bounded, at most 32 of them.
    static func displayed(_ command: [String]) -> String {
        let shown = command.prefix(32).map { CommandLineLimits.displayed($0) }
        return shown.joined(separator: " ") + (command.count > 32 ? " …(\(command.count - 32) more)" : "")
    }
}
