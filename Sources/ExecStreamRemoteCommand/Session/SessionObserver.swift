package import ExecStreamCore

/// What a session tells whoever watches sessions (metrics, the audit log): the one place where
/// they see sessions, whatever the transport. Adapters report nothing themselves.
///
/// `sessionStarted`, `firstOutput` and `sessionEnded` are called on the session's event loop,
/// once each (the first output may never come); `transferred` from the thread that moved the
/// bytes (stdin from any, output on the loop), once per delivery, never per byte.
package protocol SessionObserver: Sendable {
    /// A session has started: its plan is resolved, its transport chosen.
    func sessionStarted(_ session: ObservedSession)
    /// `byteCount` bytes of `stream` went to the client (stdout, stderr) or came from it (stdin).
    func transferred(_ byteCount: Int, of stream: StandardStream, in session: ObservedSession)
    /// The first output byte went to the client, `latency` after the session started.
    func firstOutput(after latency: Duration, in session: ObservedSession)
    /// An exec's process was spawned; `latency` is the spawn itself (configuration, clone, exec).
    func processSpawned(after latency: Duration, in session: ObservedSession)
    /// An exec's process exited (attach sessions do not own their process).
    func processExited(_ status: ProcessExitStatus, in session: ObservedSession)
    /// The session has let go of everything.
    func sessionEnded(_ session: ObservedSession, _ end: ObservedSessionEnd)
}

/// What kind of session: a metric label and an audit field.
package enum ObservedSessionKind: String, Sendable, Hashable, CaseIterable {
    /// `/exec/{token}`.
    case exec
    /// `/attach/{token}`.
    case attach
    /// `/portforward/{token}`.
    case portForward = "portforward"
    /// containerd's `Streaming/Stream`: one channel of a sandbox runtime's IO.
    case containerdStream = "containerd_stream"
}

/// A session as its observers see it.
package struct ObservedSession: Sendable {
    /// Exec, attach, port-forward, or a containerd stream.
    package var kind: ObservedSessionKind
    /// The transport's name, as a metric label: `native`, `websocket`, `websocket-h2`, `spdy`,
    /// `spdy-websocket`, `spdy-websocket-h2`, `grpc`.
    package var transport: String
    /// The container's id (a port-forward's sandbox; a containerd stream's channel id).
    package var containerID: String
    /// An exec's command.
    package var command: [String]?
    /// Who the client is (the connection's peer identity), for the audit log.
    package var peer: String
    /// The Kubernetes audit ID of the request (its `Audit-Id` header, which the API server sets
    /// and the kubelet's proxy passes on), for the audit log.
    package var auditID: String?

    package init(kind: ObservedSessionKind, transport: String, containerID: String, command: [String]?, peer: String, auditID: String? = nil) {
        self.kind = kind
        self.transport = transport
        self.containerID = containerID
        self.command = command
        self.peer = peer
        self.auditID = auditID
    }
}

/// How a session ended, as its observers see it.
package struct ObservedSessionEnd: Sendable {
    /// What the client was told, or why it was told nothing.
    package enum Outcome: Sendable, Hashable {
        /// The status was written: the process exited (or could not start, or was preempted).
        case status(RemoteCommandOutcome)
        /// The client went away before the status.
        case clientGone
        /// A session without a status (port-forward, a containerd stream) ended cleanly.
        case closed
        /// A session without a status ended on an error (a containerd stream's gRPC status).
        case failed(String)
    }

    package var outcome: Outcome
    /// Bytes each way, by stream (a port-forward's: stdin to the service, stdout from it).
    package var bytes: [StandardStream: Int]
    /// From the start to the release.
    package var duration: Duration

    package init(outcome: Outcome, bytes: [StandardStream: Int], duration: Duration) {
        self.outcome = outcome
        self.bytes = bytes
        self.duration = duration
    }

    /// The outcome as a metric label: `exit_zero`, `exit_nonzero`, `not_started`, `error`,
    /// `preempted`, `client_gone`, `closed`, or a failed stream's reason (a gRPC code's name).
    package var outcomeLabel: String {
        switch self.outcome {
        case .status(.exited(code: 0)): "exit_zero"
        case .status(.exited): "exit_nonzero"
        case .status(.notStarted): "not_started"
        case .status(.internalError): "error"
        case .status(.preempted): "preempted"
        case .clientGone: "client_gone"
        case .closed: "closed"
        case .failed(let reason): reason
        }
    }
}

/// Several observers as one: each event goes to every one, in order.
package struct SessionObservers: SessionObserver {
    private let observers: [any SessionObserver]

    package init(_ observers: [any SessionObserver]) {
        self.observers = observers
    }

    package func sessionStarted(_ session: ObservedSession) {
        for observer in self.observers { observer.sessionStarted(session) }
    }

    package func transferred(_ byteCount: Int, of stream: StandardStream, in session: ObservedSession) {
        for observer in self.observers { observer.transferred(byteCount, of: stream, in: session) }
    }

    package func firstOutput(after latency: Duration, in session: ObservedSession) {
        for observer in self.observers { observer.firstOutput(after: latency, in: session) }
    }

    package func processSpawned(after latency: Duration, in session: ObservedSession) {
        for observer in self.observers { observer.processSpawned(after: latency, in: session) }
    }

    package func processExited(_ status: ProcessExitStatus, in session: ObservedSession) {
        for observer in self.observers { observer.processExited(status, in: session) }
    }

    package func sessionEnded(_ session: ObservedSession, _ end: ObservedSessionEnd) {
        for observer in self.observers { observer.sessionEnded(session, end) }
    }
}

/// Observes nothing: for sessions nobody watches (tests, tools).
package struct NoSessionObserver: SessionObserver {
    package init() {}
    package func sessionStarted(_ session: ObservedSession) {}
    package func transferred(_ byteCount: Int, of stream: StandardStream, in session: ObservedSession) {}
    package func firstOutput(after latency: Duration, in session: ObservedSession) {}
    package func processSpawned(after latency: Duration, in session: ObservedSession) {}
    package func processExited(_ status: ProcessExitStatus, in session: ObservedSession) {}
    package func sessionEnded(_ session: ObservedSession, _ end: ObservedSessionEnd) {}
}
