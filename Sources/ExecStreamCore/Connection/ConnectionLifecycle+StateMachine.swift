// # Connection lifecycle
//
// The life of one HTTP/2 server connection around its streams: keepalive PINGs, the idle timeout,
// and the graceful GOAWAY drain (RFC 9113 §6.8: a first GOAWAY with the highest stream id and a
// PING, then, once the PING is acknowledged, a second GOAWAY with the last stream id processed).
// The owner (the connection handler) keeps the timers and writes the frames; this machine decides.
//
//                       shutdownRequested / idleTimerFired (no streams)
//     ┌────────┐ ─────────────────────────────────────────────────────▶ ┌───────────┐
//     │ active │   send GOAWAY(2^31-1) + shutdown PING, arm grace timer  │ quiescing │
//     └────────┘                                                          └───────────┘
//                                                                               │ shutdownPingAcked
//                                                                               ▼ send GOAWAY(last stream)
//     ┌────────┐              last stream closed (or none open)           ┌───────────┐
//     │ closed │ ◀──────────────────────────────────────────────────────── │ draining  │
//     └────────┘                                                          └───────────┘
//         ▲  keepalive PING unanswered, grace timer fired, or the peer closed: from any state
//         └──────────────────────────────────────────────────────────────────────────────
//
// Keepalive: the owner fires `keepaliveTimerFired` after `interval` without inbound frames; a PING
// goes out unless one is outstanding; `pingTimeoutFired` before its ACK closes the connection.
// Idleness: when the last stream closes in `active`, the owner arms the idle timer; a stream
// opening cancels it; `idleTimerFired` with no streams starts the graceful shutdown.

/// Why a connection closed.
public enum ConnectionCloseReason: Hashable, Sendable {
    /// The graceful shutdown completed: every stream finished.
    case drained
    /// A keepalive PING was not acknowledged in time.
    case keepaliveTimeout
    /// The grace period of a graceful shutdown ran out with streams still open.
    case gracePeriodExpired
    /// The peer closed the connection, or it failed.
    case peerClosed
}

/// What the owner must do after a lifecycle event.
public enum ConnectionLifecycleAction: Hashable, Sendable {
    /// Nothing.
    case none
    /// Send a keepalive PING and arm the PING timeout.
    case sendKeepalivePing
    /// Cancel the PING timeout: the keepalive PING was acknowledged.
    case cancelPingTimeout
    /// Arm the idle timer: no stream is open.
    case armIdleTimer
    /// Cancel the idle timer: a stream opened.
    case cancelIdleTimer
    /// Send GOAWAY with the highest stream id and a shutdown PING, and arm the grace timer.
    case sendGoAwayNotice
    /// Send GOAWAY with the last stream id processed; more streams will be refused.
    case sendFinalGoAway
    /// Send GOAWAY with the last stream id processed, then close the connection: nothing is open.
    case sendFinalGoAwayAndClose
    /// Close the connection now.
    case close(ConnectionCloseReason)
}

/// The lifecycle state machine of one HTTP/2 server connection.
public struct ConnectionLifecycleStateMachine: Sendable {
    private enum State: Sendable {
        /// Serving; streams may open.
        case active(Active)
        /// First GOAWAY sent; waiting for the shutdown PING's ACK before the final GOAWAY.
        case quiescing(Active)
        /// Final GOAWAY sent; waiting for the open streams to finish.
        case draining(Active)
        /// Closed, or asked to close. Terminal.
        case closed
    }

    /// What every open state knows.
    private struct Active: Sendable {
        /// Streams open now.
        var openStreams = 0
        /// Whether a keepalive PING awaits its ACK.
        var keepalivePingOutstanding = false
    }

    private var state: State = .active(Active())

    public init() {}

    /// Whether the connection accepts new streams.
    public var isAcceptingStreams: Bool {
        switch self.state {
        case .active, .quiescing:
            return true
        case .draining, .closed:
            return false
        }
    }

    /// Whether a close has been decided.
    public var isClosed: Bool {
        switch self.state {
        case .closed:
            return true
        case .active, .quiescing, .draining:
            return false
        }
    }

    /// A stream opened.
    public mutating func streamOpened() -> ConnectionLifecycleAction {
        switch self.state {
        case .active(var active):
            active.openStreams += 1
            self.state = .active(active)
            return active.openStreams == 1 ? .cancelIdleTimer : .none
        case .quiescing(var active):
            active.openStreams += 1
            self.state = .quiescing(active)
            return .none
        case .draining(var active):
            // nghttp2 refuses streams above the final GOAWAY's id; one below it may still open.
            active.openStreams += 1
            self.state = .draining(active)
            return .none
        case .closed:
            return .none
        }
    }

    /// A stream closed.
    public mutating func streamClosed() -> ConnectionLifecycleAction {
        switch self.state {
        case .active(var active):
            active.openStreams = max(0, active.openStreams - 1)
            self.state = .active(active)
            return active.openStreams == 0 ? .armIdleTimer : .none
        case .quiescing(var active):
            active.openStreams = max(0, active.openStreams - 1)
            self.state = .quiescing(active)
            return .none
        case .draining(var active):
            active.openStreams = max(0, active.openStreams - 1)
            if active.openStreams == 0 {
                self.state = .closed
                return .close(.drained)
            }
            self.state = .draining(active)
            return .none
        case .closed:
            return .none
        }
    }

    /// The keepalive interval passed without inbound frames.
    public mutating func keepaliveTimerFired() -> ConnectionLifecycleAction {
        self.updateOpenState { open in
            guard !open.keepalivePingOutstanding else { return .none }
            open.keepalivePingOutstanding = true
            return .sendKeepalivePing
        }
    }

    /// The keepalive PING was acknowledged.
    public mutating func keepalivePingAcked() -> ConnectionLifecycleAction {
        self.updateOpenState { open in
            open.keepalivePingOutstanding = false
            return .cancelPingTimeout
        }
    }

    /// Applies `body` to the payload of whichever open state the machine is in, keeping that
    /// state: for events that mean the same in all of them. Nothing happens once closed.
    private mutating func updateOpenState(_ body: (inout Active) -> ConnectionLifecycleAction) -> ConnectionLifecycleAction {
        switch self.state {
        case .active(var open):
            let action = body(&open)
            self.state = .active(open)
            return action
        case .quiescing(var open):
            let action = body(&open)
            self.state = .quiescing(open)
            return action
        case .draining(var open):
            let action = body(&open)
            self.state = .draining(open)
            return action
        case .closed:
            return .none
        }
    }

    /// The keepalive PING was not acknowledged in time.
    public mutating func pingTimeoutFired() -> ConnectionLifecycleAction {
        switch self.state {
        case .active, .quiescing, .draining:
            self.state = .closed
            return .close(.keepaliveTimeout)
        case .closed:
            return .none
        }
    }

    /// The idle timer fired.
    public mutating func idleTimerFired() -> ConnectionLifecycleAction {
        switch self.state {
        case .active(let active):
            guard active.openStreams == 0 else { return .none }
            self.state = .quiescing(active)
            return .sendGoAwayNotice
        case .quiescing, .draining, .closed:
            return .none
        }
    }

    /// The server is shutting down: stop taking new streams, let the open ones finish.
    public mutating func shutdownRequested() -> ConnectionLifecycleAction {
        switch self.state {
        case .active(let active):
            self.state = .quiescing(active)
            return .sendGoAwayNotice
        case .quiescing, .draining, .closed:
            return .none
        }
    }

    /// The shutdown PING was acknowledged: streams the peer sent before it are known.
    public mutating func shutdownPingAcked() -> ConnectionLifecycleAction {
        switch self.state {
        case .quiescing(let active):
            if active.openStreams == 0 {
                self.state = .closed
                return .sendFinalGoAwayAndClose
            }
            self.state = .draining(active)
            return .sendFinalGoAway
        case .active, .draining, .closed:
            return .none
        }
    }

    /// The grace period of a graceful shutdown ran out.
    public mutating func graceTimerFired() -> ConnectionLifecycleAction {
        switch self.state {
        case .quiescing, .draining:
            self.state = .closed
            return .close(.gracePeriodExpired)
        case .active, .closed:
            return .none
        }
    }

    /// The peer closed the connection or it failed.
    public mutating func connectionClosed() {
        self.state = .closed
    }
}
