public import NIOCore

// # The exec/attach session state machine
//
// One client session of `/exec/{token}` or `/attach/{token}`, whatever the transport. It decides
// only the order of things; the owner starts processes, moves bytes and writes frames.
//
//   awaitingStreams ──clientStreamsReady──▶ starting ──processStarted──▶ running
//        │   (exec: startProcess with the initial size; attach: attach, straight to running)
//        │                                     │ processFailedToStart        │ processExited
//        │                                     ▼                             ▼
//        │                               writingStatus ◀── finishingOutputs ◀─ drainingAfterExit
//        │                         (InternalError)     outputStreamsFinished   (all outputs drained,
//        │                                     │                                or the drain timer)
//        │                                     ▼ statusWritten
//        └──────────── clientVanished ───────▶ closed ◀──── abandoned ◀── clientVanished (exec,
//                                                       processExited       process running:
//                                                                           kill its group)
//
// The ending is always: process exits → its output is drained to the client → stdout/stderr are
// finished → the status is written → close (PROTOCOLS.md §3d). Stdin plays no part: a session
// never waits for stdin EOF. A background child that keeps stdout open after the process exited
// gets `postExitDrain` (2 s by default), then the outputs are abandoned so the client is not hung.
// A vanished client kills an exec's process group (if the policy says so) and nothing else; an
// attach session never kills a container's main process, and reports only Success or an
// internal error, or that it was preempted.
//
// Preemption (newest attach wins): `preempted` from starting, running or drainingAfterExit goes
// to finishingOutputs with the Conflict status; the outputs are abandoned (the newer consumer has
// the channels, and every byte this session did not take) and the process is left alone.

/// Exec runs a new process; attach joins a container's main process.
public enum SessionKind: Hashable, Sendable {
    /// `/exec/{token}`: the session starts, and owns, a process.
    case exec
    /// `/attach/{token}`: the session consumes a container's channels; the process is not its own.
    case attach
}

/// What the session owner must do, in order.
public enum ExecSessionAction: Hashable, Sendable {
    /// Start the process (exec), applying `initialSize` to its terminal before it runs.
    case startProcess(initialSize: TerminalSize?)
    /// Start consuming the container's channels (attach).
    case attachToContainer
    /// Resize the process's terminal.
    case resizeTerminal(TerminalSize)
    /// Arm the post-exit drain timer.
    case armDrainTimer(TimeAmount)
    /// Cancel the post-exit drain timer.
    case cancelDrainTimer
    /// Stop waiting for output still held open by a background child: stop reading it.
    case abandonOutputs
    /// Finish (FIN / END_STREAM / close channel) the client's stdout and stderr streams.
    case finishOutputStreams
    /// Write this status on the error/status channel.
    case writeStatus(RemoteCommandOutcome)
    /// Kill the exec's process group (the client vanished).
    case killProcessGroup
    /// Release everything: close the connection or stream, detach from channels.
    case close
}

/// The state machine of one exec or attach session.
public struct ExecSessionStateMachine: Sendable {
    /// Per-session settings.
    public struct Configuration: Hashable, Sendable {
        /// Exec or attach.
        public var kind: SessionKind
        /// The output streams the client asked for (stdout; stderr unless tty).
        public var outputs: Set<StandardStream>
        /// How long output may stay open after the process exited (a background child holding it).
        public var postExitDrain: TimeAmount
        /// Whether a vanished client kills an exec's process group. Attach never kills.
        public var killProcessGroupWhenClientVanishes: Bool

        public init(
            kind: SessionKind,
            outputs: Set<StandardStream>,
            postExitDrain: TimeAmount = .seconds(2),
            killProcessGroupWhenClientVanishes: Bool = true
        ) {
            self.kind = kind
            self.outputs = outputs.subtracting([.stdin])
            self.postExitDrain = postExitDrain
            self.killProcessGroupWhenClientVanishes = killProcessGroupWhenClientVanishes
        }
    }

    private enum State: Sendable {
        /// The client's streams are not all there yet; a size that arrives early waits here.
        case awaitingStreams(pendingSize: TerminalSize?)
        /// The process is being started; a resize that arrives meanwhile waits here. Its output
        /// may already reach end of stream (a command that exits at once), so drained outputs
        /// are tracked from here on.
        case starting(pendingResize: TerminalSize?, openOutputs: Set<StandardStream>)
        /// The process runs; these outputs have not reached end of stream yet.
        case running(openOutputs: Set<StandardStream>)
        /// The process exited; waiting (bounded) for the rest of its output.
        case drainingAfterExit(status: ProcessExitStatus, openOutputs: Set<StandardStream>)
        /// Output streams are being finished; the status comes next.
        case finishingOutputs(RemoteCommandOutcome)
        /// The status is being written; then close.
        case writingStatus
        /// The client is gone; waiting for the process to exit (or to start, then be killed).
        case abandoned(processRunning: Bool)
        /// Over. Terminal.
        case closed
    }

    /// The session's settings.
    public let configuration: Configuration
    private var state: State = .awaitingStreams(pendingSize: nil)

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// Whether the session is over.
    public var isClosed: Bool {
        if case .closed = self.state { return true }
        return false
    }

    // MARK: Events

    /// Every stream the client set up is there: the process may start (exec) or attach.
    public mutating func clientStreamsReady() -> [ExecSessionAction] {
        switch self.state {
        case .awaitingStreams(let size):
            switch self.configuration.kind {
            case .exec:
                self.state = .starting(pendingResize: nil, openOutputs: self.configuration.outputs)
                return [.startProcess(initialSize: size)]
            case .attach:
                self.state = .running(openOutputs: self.configuration.outputs)
                return [.attachToContainer] + (size.map { [.resizeTerminal($0)] } ?? [])
            }
        case .starting, .running, .drainingAfterExit, .finishingOutputs, .writingStatus, .abandoned, .closed:
            return []
        }
    }

    /// The client sent a terminal size (the first one may come before the process exists).
    public mutating func terminalResized(_ size: TerminalSize) -> [ExecSessionAction] {
        switch self.state {
        case .awaitingStreams:
            self.state = .awaitingStreams(pendingSize: size)
            return []
        case .starting(_, let open):
            self.state = .starting(pendingResize: size, openOutputs: open)
            return []
        case .running, .drainingAfterExit:
            return [.resizeTerminal(size)]
        case .finishingOutputs, .writingStatus, .abandoned, .closed:
            return []
        }
    }

    /// The process is running.
    public mutating func processStarted() -> [ExecSessionAction] {
        switch self.state {
        case .starting(let pendingResize, let open):
            self.state = .running(openOutputs: open)
            return pendingResize.map { [.resizeTerminal($0)] } ?? []
        case .abandoned:
            // The client left while the process was starting.
            self.state = .abandoned(processRunning: true)
            return self.configuration.killProcessGroupWhenClientVanishes ? [.killProcessGroup] : []
        case .awaitingStreams, .running, .drainingAfterExit, .finishingOutputs, .writingStatus, .closed:
            return []
        }
    }

    /// The process could not be started: the command's fault when a shell would give an
    /// `exitCode` for it (126, 127), else the system's.
    public mutating func processFailedToStart(message: String, exitCode: UInt8? = nil) -> [ExecSessionAction] {
        switch self.state {
        case .starting:
            self.state = .finishingOutputs(exitCode.map { .notStarted(exitCode: $0, message: message) } ?? .internalError(message: message))
            return [.finishOutputStreams]
        case .abandoned:
            self.state = .closed
            return [.close]
        case .awaitingStreams, .running, .drainingAfterExit, .finishingOutputs, .writingStatus, .closed:
            return []
        }
    }

    /// Every byte of `stream` reached the client, then end of stream.
    public mutating func outputDrained(_ stream: StandardStream) -> [ExecSessionAction] {
        switch self.state {
        case .starting(let pendingResize, var open):
            open.remove(stream)
            self.state = .starting(pendingResize: pendingResize, openOutputs: open)
            return []
        case .running(var open):
            open.remove(stream)
            self.state = .running(openOutputs: open)
            return []
        case .drainingAfterExit(let status, var open):
            open.remove(stream)
            guard open.isEmpty else {
                self.state = .drainingAfterExit(status: status, openOutputs: open)
                return []
            }
            self.state = .finishingOutputs(self.outcome(for: status))
            return [.cancelDrainTimer, .finishOutputStreams]
        case .awaitingStreams, .finishingOutputs, .writingStatus, .abandoned, .closed:
            return []
        }
    }

    /// A newer attach took one of the session's output channels (newest attach wins): stop
    /// reading, finish the outputs, and tell the client. The process is not the session's to stop.
    public mutating func preempted(message: String) -> [ExecSessionAction] {
        switch self.state {
        case .starting, .running:
            self.state = .finishingOutputs(.preempted(message: message))
            return [.abandonOutputs, .finishOutputStreams]
        case .drainingAfterExit:
            self.state = .finishingOutputs(.preempted(message: message))
            return [.cancelDrainTimer, .abandonOutputs, .finishOutputStreams]
        case .awaitingStreams, .finishingOutputs, .writingStatus, .abandoned, .closed:
            return []
        }
    }

    /// The process exited (for attach: the container's main process).
    public mutating func processExited(_ status: ProcessExitStatus) -> [ExecSessionAction] {
        switch self.state {
        case .running(let open):
            guard !open.isEmpty else {
                self.state = .finishingOutputs(self.outcome(for: status))
                return [.finishOutputStreams]
            }
            self.state = .drainingAfterExit(status: status, openOutputs: open)
            return [.armDrainTimer(self.configuration.postExitDrain)]
        case .abandoned:
            self.state = .closed
            return [.close]
        case .awaitingStreams, .starting, .drainingAfterExit, .finishingOutputs, .writingStatus, .closed:
            return []
        }
    }

    /// The post-exit drain ran out: a background child still holds output open.
    public mutating func drainTimerFired() -> [ExecSessionAction] {
        switch self.state {
        case .drainingAfterExit(let status, _):
            self.state = .finishingOutputs(self.outcome(for: status))
            return [.abandonOutputs, .finishOutputStreams]
        case .awaitingStreams, .starting, .running, .finishingOutputs, .writingStatus, .abandoned, .closed:
            return []
        }
    }

    /// stdout and stderr have been finished on the client's side.
    public mutating func outputStreamsFinished() -> [ExecSessionAction] {
        switch self.state {
        case .finishingOutputs(let outcome):
            self.state = .writingStatus
            return [.writeStatus(outcome)]
        case .awaitingStreams, .starting, .running, .drainingAfterExit, .writingStatus, .abandoned, .closed:
            return []
        }
    }

    /// The status has been written.
    public mutating func statusWritten() -> [ExecSessionAction] {
        switch self.state {
        case .writingStatus:
            self.state = .closed
            return [.close]
        case .awaitingStreams, .starting, .running, .drainingAfterExit, .finishingOutputs, .abandoned, .closed:
            return []
        }
    }

    /// The client went away (connection lost, stream reset, idle timeout).
    public mutating func clientVanished() -> [ExecSessionAction] {
        let killing = self.configuration.kind == .exec && self.configuration.killProcessGroupWhenClientVanishes
        switch self.state {
        case .awaitingStreams:
            self.state = .closed
            return [.close]
        case .starting:
            self.state = .abandoned(processRunning: false)
            return []
        case .running:
            switch self.configuration.kind {
            case .exec:
                // Stay until the process exits so its resources are released in order.
                self.state = .abandoned(processRunning: true)
                return killing ? [.killProcessGroup] : []
            case .attach:
                self.state = .closed
                return [.close]
            }
        case .drainingAfterExit:
            self.state = .closed
            return [.cancelDrainTimer, .abandonOutputs, .close]
        case .finishingOutputs, .writingStatus:
            self.state = .closed
            return [.close]
        case .abandoned, .closed:
            return []
        }
    }

    private func outcome(for status: ProcessExitStatus) -> RemoteCommandOutcome {
        switch self.configuration.kind {
        case .exec:
            return .exited(code: status.remoteExitCode)
        case .attach:
            // Attach reports Success or an internal error only (PROTOCOLS.md §3d).
            return .exited(code: 0)
        }
    }
}
