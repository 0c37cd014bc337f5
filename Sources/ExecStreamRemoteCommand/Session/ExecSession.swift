package import ExecStreamCore
package import ExecStreamProcess
import Logging
package import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What became of a write of output to the client.
enum SessionOutputWriteResult: Hashable, Sendable {
    /// Queued; the client may take more.
    case writable
    /// Queued, but the client is behind: wait for `whenWritable` before answering the delivery.
    case aboveHighWatermark
    /// The client's stream is gone; nothing was queued.
    case closed
    /// Queued, and the client will confirm it (resumable native attach): wait for `whenConfirmed`.
    case awaitingConfirmation
}

/// How a delivery of output to a client ended, for the registry.
enum OutputDeliveryResult: Hashable, Sendable {
    /// The client has all of it.
    case delivered
    /// The client's stream ended after it had taken (or confirmed) the first `deliveredByteCount`
    /// bytes; the rest goes back to the channel.
    case failed(deliveredByteCount: Int)
}

/// The client side of a session, whatever the protocol (native HTTP/2, WebSocket over HTTP/1.1 or
/// HTTP/2, SPDY). Every method is called on `eventLoop`.
protocol SessionOutputTransport: AnyObject {
    /// The loop the session runs on.
    var eventLoop: any EventLoop { get }
    /// Writes bytes of `stream` (stdout or stderr) that start at `streamOffset` in its channel.
    func writeOutput(_ stream: StandardStream, _ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int) -> SessionOutputWriteResult
    /// Calls `callback` once the client has taken what was queued (or is gone).
    func whenWritable(_ callback: @escaping () -> Void)
    /// The client asked for stdin, and `input` is where it goes (`input.acceptsStdin` false: the
    /// channel is gone, stdin is closed for good). Called once, before any output is written, so
    /// a transport that announces stdin credit announces it first.
    func stdinAttached(_ input: SessionInput)
    /// Ends the client's output streams (FIN, close frames).
    func finishOutputs(_ streams: Set<StandardStream>)
    /// Writes the status and ends the response.
    func writeStatus(_ outcome: RemoteCommandOutcome)
    /// Releases the client's stream (reset it if the response has not ended).
    func close()
}

extension SessionOutputTransport {
    func stdinAttached(_ input: SessionInput) {}
}

/// A transport whose client confirms what it received and comes back after its stream breaks
/// (a resumable attach, on the native format): a write it answers `.awaitingConfirmation` is
/// delivered only once confirmed, and when it goes, only its close frame (or the end of its
/// request) has ended stdin, never the stream's end. Only such a transport is asked these; the
/// others have no part in them.
protocol ConfirmingOutputTransport: SessionOutputTransport {
    /// After `.awaitingConfirmation`: calls `callback` once the client confirmed the write, or
    /// with the confirmed prefix once the stream ends first (`abandonUnconfirmedOutput`).
    func whenConfirmed(_ stream: StandardStream, _ callback: @escaping (OutputDeliveryResult) -> Void)
    /// The session is letting go of its channels: settle every write awaiting confirmation now,
    /// with the prefix the client confirmed.
    func abandonUnconfirmedOutput()
}

/// Callbacks waiting for a socket to become writable again: the `whenWritable` of the session
/// clients that sit on a channel pipeline (WebSocket, SPDY). On the channel's event loop.
struct WritabilityWaiters {
    private var callbacks: [() -> Void] = []

    /// Calls `callback` at once if `channel` can take more (or is gone), else when it can.
    mutating func whenWritable(_ channel: (any Channel)?, _ callback: @escaping () -> Void) {
        guard let channel, channel.isActive, !channel.isWritable else {
            callback()
            return
        }
        self.callbacks.append(callback)
    }

    /// The channel became writable, or inactive: every waiter goes on.
    mutating func resume() {
        let callbacks = self.callbacks
        self.callbacks = []
        callbacks.forEach { $0() }
    }
}

/// What runs the processes of a session's container, as the session needs it: a configuration to
/// spawn an exec with, and the container's main process for an attach. The server's container
/// supervisor provides one per container; a test can provide its own.
package protocol SessionProcessHost: Sendable {
    /// How to spawn `arguments` in the container (its namespaces, credentials, environment).
    func processConfiguration(arguments: [String], stdio: ProcessConfiguration.Stdio) throws(ExecStreamError) -> ProcessConfiguration
    /// The main process's terminal, if it runs in one.
    var mainProcessTerminal: Int32? { get }
    /// Calls `observer` once when the main process exits (at once if it has); nil if the
    /// container has no main process. The token is for `removeMainProcessObserver`.
    func observeMainProcessExit(_ observer: @escaping @Sendable (ProcessExitStatus) -> Void) -> UInt64?
    /// Forgets an observer that has not been called.
    func removeMainProcessObserver(_ token: UInt64)
    /// An exec's process (the leader of its own process group) is running: the server may have
    /// to kill it on a forced shutdown, whatever its session does.
    func execStarted(pid: Int32)
    /// That process has exited and been reaped.
    func execExited(pid: Int32)
}

/// What a session does: the cached CRI request, resolved against its container.
package struct ExecSessionPlan: Sendable {
    /// Exec runs a command; attach joins the main process.
    package enum Target: Sendable {
        /// Run this command.
        case exec(command: [String])
        /// Join the container's main process.
        case attach
    }

    /// The container's id.
    package var containerID: String
    /// Exec or attach.
    package var target: Target
    /// A terminal instead of pipes.
    package var tty: Bool
    /// Streams the client asked for.
    package var stdin: Bool
    package var stdout: Bool
    package var stderr: Bool
    /// Attach: the main process was created with stdin_once, so the first client to end its
    /// stdin ends the process's.
    package var stdinOnce: Bool
    /// How long an exec's output may stay open after the process exited.
    package var postExitDrain: TimeAmount
    /// Whether a vanished client kills its exec's process group.
    package var killProcessGroupWhenClientVanishes: Bool
    /// Runs the container's processes.
    package var processes: any SessionProcessHost
    /// The transport's name for observers (`native`, `websocket`, `websocket-h2`, `spdy`).
    package var transport: String
    /// Who watches sessions (metrics, the audit log).
    package var observer: any SessionObserver
    /// Who the client is (the connection's peer identity), for observers.
    package var peer: String
    /// The request's Kubernetes audit ID, for observers.
    package var auditID: String?

    package init(
        containerID: String,
        target: Target,
        tty: Bool,
        stdin: Bool,
        stdout: Bool,
        stderr: Bool,
        stdinOnce: Bool,
        postExitDrain: TimeAmount,
        killProcessGroupWhenClientVanishes: Bool,
        processes: any SessionProcessHost,
        transport: String,
        observer: any SessionObserver = NoSessionObserver(),
        peer: String = "",
        auditID: String? = nil
    ) {
        self.containerID = containerID
        self.target = target
        self.tty = tty
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.stdinOnce = stdinOnce
        self.postExitDrain = postExitDrain
        self.killProcessGroupWhenClientVanishes = killProcessGroupWhenClientVanishes
        self.processes = processes
        self.transport = transport
        self.observer = observer
        self.peer = peer
        self.auditID = auditID
    }

    /// The session as its observers see it.
    var observed: ObservedSession {
        switch self.target {
        case .exec(let command):
            ObservedSession(kind: .exec, transport: self.transport, containerID: self.containerID, command: command, peer: self.peer, auditID: self.auditID)
        case .attach:
            ObservedSession(kind: .attach, transport: self.transport, containerID: self.containerID, command: nil, peer: self.peer, auditID: self.auditID)
        }
    }
}

/// A session ready to start: its plan, and the release of its session slot.
package struct PreparedSession: Sendable {
    package let plan: ExecSessionPlan
    package let release: @Sendable () -> Void

    package init(plan: ExecSessionPlan, release: @escaping @Sendable () -> Void) {
        self.plan = plan
        self.release = release
    }
}

/// Drives one exec or attach session: the `ExecSessionStateMachine` decides, this carries out.
/// An exec owns its process and its three IOChannels; an attach consumes the channels of a
/// container's main process and leaves them to the next attach when it goes. Bytes move through
/// the registry both ways. Lives on its client's event loop: every method is called there.
final class ExecSession {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.sessions)
    private let plan: ExecSessionPlan
    private let registry: ChannelRegistry
    private let client: any SessionOutputTransport
    /// The same client when it confirms output (resumable attach); nil for every other transport.
    private let confirming: (any ConfirmingOutputTransport)?
    private let logger: Logger
    private var machine: ExecSessionStateMachine
    /// The owner part of the session's channel ids: `exec-<random>`, or the container's id.
    private let owner: String
    /// The attach session's main-process exit observer.
    private var exitObserver: UInt64?
    private var process: SpawnedProcess?
    private var processRunning = false
    private var readers: [ProcessOutputReader] = []
    private var writer: ProcessInputWriter?
    private var consumers: [StandardStream: ClientOutputConsumer] = [:]
    /// Decodes the resize channel (see `resizeReceived`).
    private var resizes = TerminalSizeDecoder()
    private var stdinProducer: ClientInputProducer?
    /// Where the client's events go; made by `start()`.
    private var input: SessionInput?
    private var drainTimer: Scheduled<Void>?
    /// False once the outputs are finished or abandoned: a late delivery must not follow them.
    private var acceptsOutput = true
    /// A newer attach took the session's channels: on release, stdin is left, never closed.
    private var wasPreempted = false
    /// Called once, when the session has let go of everything.
    private let onRelease: () -> Void
    /// For observers: the session as they see it, when it started, the output bytes it wrote,
    /// and the status it wrote.
    private let observed: ObservedSession
    private var startedAt: ContinuousClock.Instant?
    private var outputBytes: [StandardStream: Int] = [:]
    private var writtenOutcome: RemoteCommandOutcome?

    /// Channels of an exec linger only briefly: nobody can reattach to them.
    static let channelOptions = IOChannelOptions(lingerTTL: .seconds(5))

    init(plan: ExecSessionPlan, registry: ChannelRegistry, client: any SessionOutputTransport, logger: Logger, onRelease: @escaping () -> Void) {
        self.onRelease = onRelease
        self.plan = plan
        self.observed = plan.observed
        self.registry = registry
        self.client = client
        self.confirming = client as? any ConfirmingOutputTransport
        self.logger = logger
        var outputs: Set<StandardStream> = []
        if plan.stdout { outputs.insert(.stdout) }
        if plan.stderr && !plan.tty { outputs.insert(.stderr) }
        switch plan.target {
        case .exec:
            self.machine = ExecSessionStateMachine(
                configuration: .init(
                    kind: .exec,
                    outputs: outputs,
                    postExitDrain: plan.postExitDrain,
                    killProcessGroupWhenClientVanishes: plan.killProcessGroupWhenClientVanishes
                )
            )
            var random = SystemRandomNumberGenerator()
            self.owner = "exec-" + String(random.next(), radix: 16)
        case .attach:
            self.machine = ExecSessionStateMachine(
                configuration: .init(kind: .attach, outputs: outputs, postExitDrain: plan.postExitDrain)
            )
            self.owner = plan.containerID
        }
        let endOfInputClosesChannel: Bool
        switch plan.target {
        case .exec: endOfInputClosesChannel = true
        case .attach: endOfInputClosesChannel = plan.stdinOnce
        }
        self.stdinProducer = plan.stdin
            ? ClientInputProducer(id: IOChannelID(owner: self.owner, stream: .stdin), registry: registry, endOfInputClosesChannel: endOfInputClosesChannel)
            : nil
    }

    private var eventLoop: any EventLoop { self.client.eventLoop }

    private func channelID(_ stream: StandardStream) -> IOChannelID {
        IOChannelID(owner: self.owner, stream: stream)
    }

    /// Exec: registers the channels and attaches the client's ends, then lets the machine start
    /// the process, so nothing the process writes can be missed and stdin sent early waits in its
    /// channel. Attach: the machine attaches at once. Returns where the adapter puts every
    /// client event from now on.
    func start() -> SessionInput {
        self.eventLoop.preconditionInEventLoop()
        self.startedAt = .now
        self.plan.observer.sessionStarted(self.observed)
        let input = SessionInput(
            producer: self.stdinProducer,
            session: NIOLoopBound(self, eventLoop: self.eventLoop),
            observer: self.plan.observer,
            observed: self.observed
        )
        self.input = input
        if case .exec = self.plan.target {
            for stream in self.machine.configuration.outputs {
                _ = self.registry.register(self.channelID(stream), options: Self.channelOptions)
            }
            if self.plan.stdin {
                _ = self.registry.register(self.channelID(.stdin), options: Self.channelOptions)
            }
            self.attachClientEnds()
        }
        self.perform(self.machine.clientStreamsReady())
        return input
    }

    /// Attaches the client as consumer of the output channels and producer of stdin. A channel
    /// that has already ended (an attach after the main process exited) counts as drained.
    private func attachClientEnds() {
        if let stdinProducer = self.stdinProducer, !stdinProducer.attach() {
            // The channel has ended: stdin is closed for good, and the input says so.
            stdinProducer.detach()
            self.stdinProducer = nil
        }
        if self.plan.stdin, let input = self.input {
            self.client.stdinAttached(input)
        }
        let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
        for stream in self.machine.configuration.outputs {
            let consumer = ClientOutputConsumer(stream: stream, session: loopBound, registry: self.registry)
            self.consumers[stream] = consumer
            if let generation = self.registry.attachConsumer(self.channelID(stream), consumer) {
                consumer.attached(as: generation)
            } else if case .attach = self.plan.target {
                // Ended (its end reaches `ended(…)` too; the machine counts a stream once) or unknown.
                self.perform(self.machine.outputDrained(stream))
            }
        }
    }

    // MARK: Client events (from `SessionInput`, on the loop)

    /// The client's terminal size, known before the session starts (the native format's
    /// `execstream-terminal-size` header).
    func terminalResized(_ size: TerminalSize) {
        self.perform(self.machine.terminalResized(size))
    }

    /// Bytes of the client's resize channel (JSON objects, split anywhere), whatever carried them.
    /// A malformed message is dropped and logged at debug: the session goes on, and later valid
    /// sizes still apply (the kubelet's library only stops reading resizes; nobody ends an exec
    /// over one).
    func resizeReceived(_ bytes: ByteBuffer) {
        var sizes: [TerminalSize] = []
        do {
            try self.resizes.feed(bytes.readableBytesView, into: &sizes)
        } catch {
            self.logger.debug("resize message dropped", metadata: ["error": "\(error.message)"])
            self.resizes = TerminalSizeDecoder()
        }
        for size in sizes {
            self.terminalResized(size)
        }
    }

    /// The client is gone before the session ended it. The same for every transport and every
    /// reason: an exec's process group is killed (unless the policy says otherwise) and the
    /// session lets go of everything; an attach lets go of the container's channels, ending
    /// stdin only with stdin_once.
    func clientGone(_ reason: ClientGoneReason) {
        self.logger.debug("client gone", metadata: ["reason": "\(reason)"])
        self.perform(self.machine.clientVanished())
    }

    // MARK: Output consumers

    fileprivate func deliverOutput(
        _ stream: StandardStream,
        _ chunks: [ByteBuffer],
        byteCount: Int,
        streamOffset: Int,
        acknowledge: @escaping (OutputDeliveryResult) -> Void
    ) {
        guard self.acceptsOutput else {
            acknowledge(.failed(deliveredByteCount: 0))
            return
        }
        let result = self.client.writeOutput(stream, chunks, byteCount: byteCount, streamOffset: streamOffset)
        if result != .closed {
            self.outputWritten(byteCount, of: stream)
        }
        switch result {
        case .writable:
            acknowledge(.delivered)
        case .aboveHighWatermark:
            // The client is behind: the channel's next delivery waits, so the process is paused at
            // the registry's watermark and memory stays bounded.
            self.client.whenWritable { acknowledge(.delivered) }
        case .awaitingConfirmation:
            guard let confirming = self.confirming else {
                preconditionFailure("only a ConfirmingOutputTransport answers .awaitingConfirmation")
            }
            confirming.whenConfirmed(stream, acknowledge)
        case .closed:
            acknowledge(.failed(deliveredByteCount: 0))
        }
    }

    /// Tells observers of output that went to the client (the first byte's latency once).
    private func outputWritten(_ byteCount: Int, of stream: StandardStream) {
        if self.outputBytes.isEmpty, let startedAt = self.startedAt {
            self.plan.observer.firstOutput(after: .now - startedAt, in: self.observed)
        }
        self.outputBytes[stream, default: 0] += byteCount
        self.plan.observer.transferred(byteCount, of: stream, in: self.observed)
    }

    fileprivate func outputDrained(_ stream: StandardStream) {
        self.perform(self.machine.outputDrained(stream))
    }

    /// A newer attach took `stream`'s channel.
    fileprivate func outputPreempted(_ stream: StandardStream) {
        self.wasPreempted = true
        let target: String
        switch self.plan.target {
        case .attach: target = "attach to container \"\(self.plan.containerID)\""
        case .exec: target = "stream for \"\(self.owner)\""
        }
        self.perform(self.machine.preempted(message: "preempted: a newer \(target) took its \(stream.rawValue)"))
    }

    // MARK: Carrying out actions

    private func perform(_ actions: [ExecSessionAction]) {
        for action in actions {
            switch action {
            case .startProcess(let initialSize):
                self.startProcess(initialSize: initialSize)
            case .attachToContainer:
                self.attachToContainer()
            case .resizeTerminal(let size):
                if let terminal = self.terminal {
                    try? ProcessSpawner.resize(terminal: terminal, to: size)
                }
            case .armDrainTimer(let delay):
                self.armDrainTimer(delay)
            case .cancelDrainTimer:
                self.drainTimer?.cancel()
                self.drainTimer = nil
            case .abandonOutputs:
                // A background child still holds the output open: stop reading, let go of the
                // client's ends; the channels are collected after their short linger.
                self.stopReading()
            case .finishOutputStreams:
                self.acceptsOutput = false
                self.client.finishOutputs(self.machine.configuration.outputs)
                self.perform(self.machine.outputStreamsFinished())
            case .writeStatus(let outcome):
                self.writtenOutcome = outcome
                self.client.writeStatus(outcome)
                self.perform(self.machine.statusWritten())
            case .killProcessGroup:
                if let process = self.process, self.processRunning {
                    ProcessSpawner.signalGroup(of: process.pid, SIGKILL)
                }
            case .close:
                self.release()
            }
        }
    }

    /// The post-exit drain bound is for output a background child holds open. Output that has
    /// reached end of file and is only waiting for the client to take it is not cut short: the
    /// bound starts again while any output channel is draining.
    private func armDrainTimer(_ delay: TimeAmount) {
        let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.drainTimer = self.eventLoop.scheduleTask(in: delay) {
            let session = loopBound.value
            if session.outputAwaitsClient {
                session.armDrainTimer(delay)
            } else {
                session.perform(session.machine.drainTimerFired())
            }
        }
    }

    /// Whether an output channel has ended (its producer closed) and still holds bytes for the
    /// client.
    private var outputAwaitsClient: Bool {
        self.machine.configuration.outputs.contains { stream in
            self.registry.snapshot(of: self.channelID(stream))?.phase == .draining
        }
    }

    /// The terminal to resize: the exec's own, or the container main process's.
    private var terminal: Int32? {
        switch self.plan.target {
        case .exec:
            return self.process?.terminal
        case .attach:
            return self.plan.processes.mainProcessTerminal
        }
    }

    private func attachToContainer() {
        guard case .attach = self.plan.target else {
            preconditionFailure("only an attach session attaches")
        }
        let processes = self.plan.processes
        self.attachClientEnds()
        let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
        let eventLoop = self.eventLoop
        self.exitObserver = processes.observeMainProcessExit { status in
            eventLoop.execute {
                let session = loopBound.value
                session.exitObserver = nil
                session.perform(session.machine.processExited(status))
            }
        }
    }

    private func startProcess(initialSize: TerminalSize?) {
        guard case .exec(let command) = self.plan.target else {
            preconditionFailure("only an exec session starts a process")
        }
        let stdio: ProcessConfiguration.Stdio = self.plan.tty
            ? .terminal(initialSize: initialSize)
            : .pipes(stdin: self.plan.stdin, stdout: self.plan.stdout, stderr: self.plan.stderr)
        let process: SpawnedProcess
        let spawnStarted = ContinuousClock.now
        do {
            let configuration = try self.plan.processes.processConfiguration(arguments: command, stdio: stdio)
            process = try ProcessSpawner.spawn(configuration)
            self.plan.observer.processSpawned(after: .now - spawnStarted, in: self.observed)
        } catch let error as ExecStreamError {
            self.perform(self.machine.processFailedToStart(message: error.message))
            return
        } catch let error as ProcessError {
            self.logger.debug("exec failed to start", metadata: ["command": "\(command)", "error": "\(error)"])
            self.perform(self.machine.processFailedToStart(message: error.message, exitCode: error.shellExitCode))
            return
        } catch {
            preconditionFailure("spawning throws only ExecStreamError and ProcessError: \(error)")
        }
        self.process = process
        self.processRunning = true
        self.plan.processes.execStarted(pid: process.pid)
        let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
        let eventLoop = self.eventLoop
        let (registry, owner, tty, stdin) = (self.registry, self.owner, self.plan.tty, self.plan.stdin)
        Task {
            await ProcessChannelWiring.wire(
                process, owner: owner, tty: tty, stdin: stdin, registry: registry, on: eventLoop,
                outputsReady: { readers in
                    // Running: a resize sent during the start reaches the terminal now, before the
                    // first stdin byte can reach the process (`read; stty size` must see the size
                    // sent first).
                    try? await eventLoop.submit {
                        let session = loopBound.value
                        session.readers = readers
                        session.perform(session.machine.processStarted())
                    }.get()
                },
                stdinReady: { writer in
                    guard let writer else { return }
                    eventLoop.execute { loopBound.value.writer = writer }
                },
                exited: { status in
                    eventLoop.execute {
                        let session = loopBound.value
                        session.processRunning = false
                        session.plan.processes.execExited(pid: process.pid)
                        session.plan.observer.processExited(status, in: session.observed)
                        session.perform(session.machine.processExited(status))
                    }
                }
            )
        }
    }

    private func stopReading() {
        self.acceptsOutput = false
        self.confirming?.abandonUnconfirmedOutput()
        for reader in self.readers {
            reader.stop()
        }
        self.readers = []
        for (stream, consumer) in self.consumers {
            consumer.detach(from: self.channelID(stream))
        }
        self.consumers = [:]
    }

    private func release() {
        self.drainTimer?.cancel()
        self.drainTimer = nil
        switch self.plan.target {
        case .exec:
            // Removal first: a channel whose consumer is still attached ends through it at once.
            // One left unattended (stdin the process never read, output a background child held)
            // is collected after its short linger.
            for stream in StandardStream.allCases {
                self.registry.requestRemoval(self.channelID(stream))
            }
            self.stopReading()
            self.writer?.close()
            self.writer = nil
            self.stdinProducer?.detach()
        case .attach:
            // The channels stay with the container: a delivery in flight goes back to the head of
            // its queue for the next attach, and stdin stays open unless the container says
            // stdin_once. A resumable client's unconfirmed bytes go back too.
            self.confirming?.abandonUnconfirmedOutput()
            for (stream, consumer) in self.consumers {
                consumer.detach(from: self.channelID(stream))
            }
            self.consumers = [:]
            self.acceptsOutput = false
            // A client that leaves ends stdin only with stdin_once (close() decides); a preempted
            // one only lets go, and so does a resumable one (it will be back).
            if self.wasPreempted || self.confirming != nil {
                self.stdinProducer?.detach()
            } else {
                self.stdinProducer?.close()
            }
            if let exitObserver = self.exitObserver {
                self.plan.processes.removeMainProcessObserver(exitObserver)
                self.exitObserver = nil
            }
        }
        self.stdinProducer = nil
        var bytes = self.outputBytes
        bytes[.stdin] = self.input?.stdinByteCount ?? 0
        // The input and this session refer to each other: both let go, whoever else keeps the input.
        self.input?.sessionReleased()
        self.input = nil
        if let terminal = self.process?.terminal {
            close(terminal)
        }
        self.client.close()
        self.onRelease()
        let duration = self.startedAt.map { .now - $0 } ?? .zero
        let outcome: ObservedSessionEnd.Outcome = self.writtenOutcome.map { .status($0) } ?? .clientGone
        self.plan.observer.sessionEnded(self.observed, ObservedSessionEnd(outcome: outcome, bytes: bytes, duration: duration))
    }
}

/// Hands one output channel of a session to its client.
final class ClientOutputConsumer: IOChannelConsumer {
    private let stream: StandardStream
    private let session: NIOLoopBound<ExecSession>
    private let registry: ChannelRegistry
    private let generation = Mutex<ConsumerGeneration?>(nil)

    init(stream: StandardStream, session: NIOLoopBound<ExecSession>, registry: ChannelRegistry) {
        self.stream = stream
        self.session = session
        self.registry = registry
    }

    func attached(as generation: ConsumerGeneration) {
        self.generation.withLock { $0 = generation }
    }

    func deliver(_ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int, channel id: IOChannelID, generation: ConsumerGeneration) {
        self.attached(as: generation)
        let session = self.session
        let registry = self.registry
        let stream = self.stream
        session.eventLoop.execute {
            session.value.deliverOutput(stream, chunks, byteCount: byteCount, streamOffset: streamOffset) { result in
                switch result {
                case .delivered:
                    registry.delivered(id, byteCount: byteCount, by: generation)
                case .failed(let deliveredByteCount):
                    registry.deliveryFailed(id, by: generation, deliveredByteCount: deliveredByteCount)
                }
            }
        }
    }

    func deliverEndOfStream(channel id: IOChannelID, generation: ConsumerGeneration) {
        let session = self.session
        let stream = self.stream
        self.registry.endOfStreamDelivered(id, by: generation)
        session.eventLoop.execute {
            session.value.outputDrained(stream)
        }
    }

    func ended(channel id: IOChannelID, generation: ConsumerGeneration, reason: IOChannelConsumerEnd) {
        let session = self.session
        let stream = self.stream
        session.eventLoop.execute {
            switch reason {
            case .endOfStream:
                session.value.outputDrained(stream)
            case .preempted:
                session.value.outputPreempted(stream)
            }
        }
    }

    /// The session no longer reads this channel.
    func detach(from id: IOChannelID) {
        if let generation = self.generation.withLock({ $0 }) {
            self.registry.consumerDetached(id, by: generation)
        }
    }
}
