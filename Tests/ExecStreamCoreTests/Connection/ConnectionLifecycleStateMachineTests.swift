import ExecStreamCore
import Testing

@Suite("Connection lifecycle state machine")
struct ConnectionLifecycleStateMachineTests {
    @Test("the idle timer is armed when the last stream closes and cancelled when one opens")
    func idleTimer() {
        var machine = ConnectionLifecycleStateMachine()
        #expect(machine.streamOpened() == .cancelIdleTimer)
        #expect(machine.streamOpened() == .none)
        #expect(machine.streamClosed() == .none)
        #expect(machine.streamClosed() == .armIdleTimer)
        #expect(machine.idleTimerFired() == .sendGoAwayNotice, "idle: begin a graceful close")
    }

    @Test("an idle timer that fires while a stream is open does nothing")
    func idleTimerWithOpenStream() {
        var machine = ConnectionLifecycleStateMachine()
        _ = machine.streamOpened()
        #expect(machine.idleTimerFired() == .none)
        #expect(machine.isAcceptingStreams)
    }

    @Test("keepalive: one PING at a time; the ACK cancels the timeout; no ACK closes")
    func keepalive() {
        var machine = ConnectionLifecycleStateMachine()
        #expect(machine.keepaliveTimerFired() == .sendKeepalivePing)
        #expect(machine.keepaliveTimerFired() == .none, "one outstanding PING at a time")
        #expect(machine.keepalivePingAcked() == .cancelPingTimeout)
        #expect(machine.keepaliveTimerFired() == .sendKeepalivePing)
        #expect(machine.pingTimeoutFired() == .close(.keepaliveTimeout))
        #expect(machine.isClosed)
        #expect(machine.keepaliveTimerFired() == .none)
    }

    @Test("graceful shutdown: GOAWAY notice and PING, final GOAWAY on the ACK, close when the last stream ends")
    func gracefulShutdownWithStreams() {
        var machine = ConnectionLifecycleStateMachine()
        _ = machine.streamOpened()
        _ = machine.streamOpened()
        #expect(machine.shutdownRequested() == .sendGoAwayNotice)
        #expect(machine.shutdownRequested() == .none)
        #expect(machine.isAcceptingStreams, "streams the client sent before the GOAWAY still count")
        #expect(machine.streamOpened() == .none)
        #expect(machine.shutdownPingAcked() == .sendFinalGoAway)
        #expect(!machine.isAcceptingStreams)
        #expect(machine.streamClosed() == .none)
        #expect(machine.streamClosed() == .none)
        #expect(machine.streamClosed() == .close(.drained))
    }

    @Test("graceful shutdown with nothing open closes as soon as the PING is acknowledged")
    func gracefulShutdownIdle() {
        var machine = ConnectionLifecycleStateMachine()
        #expect(machine.shutdownRequested() == .sendGoAwayNotice)
        #expect(machine.shutdownPingAcked() == .sendFinalGoAwayAndClose)
        #expect(machine.isClosed)
    }

    @Test("the grace period bounds a drain; it means nothing while active")
    func gracePeriod() {
        var machine = ConnectionLifecycleStateMachine()
        #expect(machine.graceTimerFired() == .none)
        _ = machine.streamOpened()
        _ = machine.shutdownRequested()
        _ = machine.shutdownPingAcked()
        #expect(machine.graceTimerFired() == .close(.gracePeriodExpired))
        #expect(machine.streamClosed() == .none, "closed is terminal")
    }

    @Test("a shutdown PING ACK outside a shutdown is ignored")
    func strayShutdownAck() {
        var machine = ConnectionLifecycleStateMachine()
        #expect(machine.shutdownPingAcked() == .none)
        #expect(machine.isAcceptingStreams)
    }
}
