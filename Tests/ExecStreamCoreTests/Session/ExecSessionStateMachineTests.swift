import ExecStreamCore
import NIOCore
import Testing

@Suite("Exec/attach session state machine")
struct ExecSessionStateMachineTests {
    let size = TerminalSize(width: 80, height: 24)

    func exec(outputs: Set<StandardStream> = [.stdout, .stderr], kill: Bool = true) -> ExecSessionStateMachine {
        ExecSessionStateMachine(configuration: .init(kind: .exec, outputs: outputs, killProcessGroupWhenClientVanishes: kill))
    }

    @Test("the ending is exit, drained output, finished streams, status, close")
    func orderlyEnding() {
        var session = self.exec()
        #expect(session.clientStreamsReady() == [.startProcess(initialSize: nil)])
        #expect(session.processStarted() == [])
        #expect(session.outputDrained(.stdout) == [])
        #expect(session.outputDrained(.stderr) == [])
        #expect(session.processExited(.exited(3)) == [.finishOutputStreams])
        #expect(session.outputStreamsFinished() == [.writeStatus(.exited(code: 3))])
        #expect(session.statusWritten() == [.close])
        #expect(session.isClosed)
    }

    @Test("output that ends before the start is reported still counts (regression: `true` took the whole drain bound)")
    func outputDrainedWhileStarting() {
        var session = self.exec()
        _ = session.clientStreamsReady()
        // A command that exits at once: its pipes reach end of stream before processStarted.
        #expect(session.outputDrained(.stdout) == [])
        #expect(session.outputDrained(.stderr) == [])
        #expect(session.processStarted() == [])
        #expect(session.processExited(.exited(0)) == [.finishOutputStreams])
    }

    @Test("output still open at exit is awaited, within the drain bound")
    func exitBeforeOutputDrained() {
        var session = self.exec()
        _ = session.clientStreamsReady()
        _ = session.processStarted()
        #expect(session.processExited(.signaled(9)) == [.armDrainTimer(.seconds(2))])
        #expect(session.outputDrained(.stdout) == [])
        #expect(session.outputDrained(.stderr) == [.cancelDrainTimer, .finishOutputStreams])
        #expect(session.outputStreamsFinished() == [.writeStatus(.exited(code: 137))])
    }

    @Test("a background child holding stdout gets the bounded drain, then the client is not hung")
    func backgroundChildHoldsOutput() {
        var session = self.exec()
        _ = session.clientStreamsReady()
        _ = session.processStarted()
        _ = session.outputDrained(.stderr)
        #expect(session.processExited(.exited(0)) == [.armDrainTimer(.seconds(2))])
        #expect(session.drainTimerFired() == [.abandonOutputs, .finishOutputStreams])
        #expect(session.outputStreamsFinished() == [.writeStatus(.exited(code: 0))])
        #expect(session.outputDrained(.stdout) == [], "late output after the abandon changes nothing")
    }

    @Test("a size sent before the streams are ready is applied before the process runs")
    func initialSizeFirst() {
        var session = self.exec(outputs: [.stdout])
        #expect(session.terminalResized(self.size) == [])
        #expect(session.clientStreamsReady() == [.startProcess(initialSize: self.size)])
    }

    @Test("a resize during the start is applied once the process runs; later ones at once")
    func resizeWhileStarting() {
        var session = self.exec(outputs: [.stdout])
        _ = session.clientStreamsReady()
        #expect(session.terminalResized(self.size) == [])
        #expect(session.processStarted() == [.resizeTerminal(self.size)])
        let bigger = TerminalSize(width: 132, height: 50)
        #expect(session.terminalResized(bigger) == [.resizeTerminal(bigger)])
    }

    @Test("a start that failed in the system ends with an internal error status, in the same order")
    func failedStart() {
        var session = self.exec()
        _ = session.clientStreamsReady()
        #expect(session.processFailedToStart(message: "exec: \"sh\": chdir: No such file or directory") == [.finishOutputStreams])
        #expect(session.outputStreamsFinished() == [.writeStatus(.internalError(message: "exec: \"sh\": chdir: No such file or directory"))])
        #expect(session.statusWritten() == [.close])
    }

    @Test("a command that cannot start ends with the shell's exit code for it, and why")
    func commandNotStarted() {
        var session = self.exec()
        _ = session.clientStreamsReady()
        #expect(session.processFailedToStart(message: "exec: \"nope\": executable file not found in $PATH", exitCode: 127) == [.finishOutputStreams])
        #expect(session.outputStreamsFinished() == [.writeStatus(.notStarted(exitCode: 127, message: "exec: \"nope\": executable file not found in $PATH"))])
        #expect(session.statusWritten() == [.close])
    }

    @Test("a vanished exec client kills the process group, and the session ends when the process exits")
    func vanishedExecClient() {
        var session = self.exec()
        _ = session.clientStreamsReady()
        _ = session.processStarted()
        #expect(session.clientVanished() == [.killProcessGroup])
        #expect(!session.isClosed)
        #expect(session.processExited(.signaled(9)) == [.close])
    }

    @Test("with the kill policy off, a vanished client leaves the process running")
    func vanishedWithoutKill() {
        var session = self.exec(kill: false)
        _ = session.clientStreamsReady()
        _ = session.processStarted()
        #expect(session.clientVanished() == [])
        #expect(session.processExited(.exited(0)) == [.close])
    }

    @Test("a client that leaves while the process starts: killed once it runs")
    func vanishedWhileStarting() {
        var session = self.exec()
        _ = session.clientStreamsReady()
        #expect(session.clientVanished() == [])
        #expect(session.processStarted() == [.killProcessGroup])
        #expect(session.processExited(.signaled(9)) == [.close])
    }

    @Test("attach never kills the container's process and reports Success whatever its exit code")
    func attach() {
        var session = ExecSessionStateMachine(configuration: .init(kind: .attach, outputs: [.stdout, .stderr]))
        #expect(session.terminalResized(self.size) == [])
        #expect(session.clientStreamsReady() == [.attachToContainer, .resizeTerminal(self.size)])
        _ = session.outputDrained(.stdout)
        _ = session.outputDrained(.stderr)
        #expect(session.processExited(.exited(7)) == [.finishOutputStreams])
        #expect(session.outputStreamsFinished() == [.writeStatus(.exited(code: 0))])

        var vanishing = ExecSessionStateMachine(configuration: .init(kind: .attach, outputs: [.stdout]))
        _ = vanishing.clientStreamsReady()
        #expect(vanishing.clientVanished() == [.close])
    }

    @Test("stdin is never part of the ending")
    func stdinIsNotAnOutput() {
        let session = ExecSessionStateMachine(configuration: .init(kind: .exec, outputs: [.stdin, .stdout]))
        #expect(session.configuration.outputs == [.stdout])
    }

    @Test("a preempted attach abandons its outputs and reports Conflict, from running or while draining")
    func preempted() {
        var running = ExecSessionStateMachine(configuration: .init(kind: .attach, outputs: [.stdout, .stderr]))
        #expect(running.clientStreamsReady() == [.attachToContainer])
        #expect(running.preempted(message: "newer") == [.abandonOutputs, .finishOutputStreams])
        #expect(running.outputStreamsFinished() == [.writeStatus(.preempted(message: "newer"))])
        #expect(running.preempted(message: "again") == [])
        #expect(running.statusWritten() == [.close])

        var draining = ExecSessionStateMachine(configuration: .init(kind: .attach, outputs: [.stdout]))
        _ = draining.clientStreamsReady()
        #expect(draining.processExited(.exited(0)) == [.armDrainTimer(.seconds(2))])
        #expect(draining.preempted(message: "newer") == [.cancelDrainTimer, .abandonOutputs, .finishOutputStreams])
        #expect(draining.outputDrained(.stdout) == [])
    }
}
