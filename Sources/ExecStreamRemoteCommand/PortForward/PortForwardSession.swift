import ExecStreamCore
import Synchronization

/// A port-forward, from its admission to its end: the sandbox's ports, the session slot it holds,
/// and what its observers see. It is the port-forward protocols' one seam, as `ExecSession` is
/// exec's and attach's: each protocol's handler starts and ends it, and the TCP connections of
/// its ports count their bytes into it (`ForwardedTCPConnection`), so metrics and the audit log
/// see every port-forward alike.
package final class PortForwardSession: Sendable {
    private struct State {
        var startedAt: ContinuousClock.Instant?
        var ended = false
    }

    /// The sandbox (a container id).
    package let sandboxID: String
    /// The CRI request's ports (SPDY takes its own from each stream pair).
    package let ports: [UInt16]
    private let releaseSlot: @Sendable () -> Void
    private let observer: any SessionObserver
    private let observed: ObservedSession
    private let toService = Atomic<Int>(0)
    private let toClient = Atomic<Int>(0)
    private let state = Mutex(State())

    package init(
        sandboxID: String,
        ports: [UInt16],
        transport: String,
        peer: String,
        auditID: String? = nil,
        observer: any SessionObserver = NoSessionObserver(),
        release: @escaping @Sendable () -> Void
    ) {
        self.sandboxID = sandboxID
        self.ports = ports
        self.releaseSlot = release
        self.observer = observer
        self.observed = ObservedSession(kind: .portForward, transport: transport, containerID: sandboxID, command: nil, peer: peer, auditID: auditID)
    }

    /// Its handler is serving it.
    package func start() {
        let first = self.state.withLock { state in
            guard state.startedAt == nil, !state.ended else { return false }
            state.startedAt = .now
            return true
        }
        if first {
            self.observer.sessionStarted(self.observed)
        }
    }

    /// `byteCount` bytes went to the forwarded service (`toService`) or came from it.
    package func forwarded(_ byteCount: Int, toService: Bool) {
        guard byteCount > 0 else { return }
        if toService {
            self.toService.add(byteCount, ordering: .relaxed)
        } else {
            self.toClient.add(byteCount, ordering: .relaxed)
        }
        self.observer.transferred(byteCount, of: toService ? .stdin : .stdout, in: self.observed)
    }

    /// The port-forward is over: its slot goes back and its observers see its end (once).
    package func end() {
        let startedAt: ContinuousClock.Instant?? = self.state.withLock { state in
            guard !state.ended else { return nil }
            state.ended = true
            return .some(state.startedAt)
        }
        guard let startedAt else { return }
        self.releaseSlot()
        guard let startedAt else { return }
        let bytes: [StandardStream: Int] = [.stdin: self.toService.load(ordering: .relaxed), .stdout: self.toClient.load(ordering: .relaxed)]
        self.observer.sessionEnded(self.observed, ObservedSessionEnd(outcome: .closed, bytes: bytes, duration: .now - startedAt))
    }

    /// It never started (its upgrade did not complete): only the slot goes back.
    package func release() {
        self.end()
    }
}
