import ExecStreamCore
import ExecStreamRemoteCommand
import ExecStreamProcess
import Foundation
import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Starts the containers' main processes, wires their stdio to the IOChannels
/// `<id>-stdin|stdout|stderr`, and tells attach sessions when a main process exits.
///
/// A main process's output waits in its channels for the next attach (up to the channel's high
/// watermark; past it the process waits in `write(2)`, as on a terminal nobody reads).
final class ContainerSupervisor: Sendable {
    /// What an attach session needs of a running main process.
    struct MainProcess: Sendable {
        var pid: Int32
        /// The terminal's master side, for resizes (tty main processes only).
        var terminal: Int32?
        var spec: MainProcessSpec
    }

    typealias ExitObserver = @Sendable (ProcessExitStatus) -> Void

    private struct Entry {
        var process: MainProcess
        var exitStatus: ProcessExitStatus?
        var observers: [UInt64: ExitObserver] = [:]
        var writer: ProcessInputWriter?
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var nextObserver: UInt64 = 0
    }

    private let store: ContainerStore
    private let registry: ChannelRegistry
    private let logger: Logger
    /// How long a removed container's output may stay open after its main process is gone (a
    /// background child holding the pipe): the sessions' post-exit drain.
    private let outputDrainBound: TimeAmount
    /// Runs the stop grace and drain timers (an event loop's timers, not a task per timer).
    private let timers: any EventLoop
    private let state = Mutex(State())
    /// The process ids (each its group's leader) of execs running now, in any container.
    fileprivate let execs = Mutex(Set<Int32>())

    init(store: ContainerStore, registry: ChannelRegistry, outputDrainBound: TimeAmount, timers: any EventLoop, logger: Logger) {
        self.store = store
        self.registry = registry
        self.outputDrainBound = outputDrainBound
        self.timers = timers
        self.logger = logger
    }

    /// Registers the channels of every declared container and starts them (the configuration's
    /// containers run from the server's start).
    func startAll(on eventLoop: any EventLoop) async throws(ExecStreamError) {
        for record in self.store.all() {
            self.registerChannels(of: record.spec)
            try await self.start(record.spec.id, on: eventLoop)
        }
    }

    /// Declares a container (CREATED) and registers its main process's channels, so streams can
    /// attach before it starts.
    func create(_ spec: ContainerSpec) throws(ExecStreamError) {
        try self.store.add(spec, now: Self.now())
        self.registerChannels(of: spec)
    }

    /// Starts a CREATED container's main process (a container without one just runs).
    func start(_ id: String, on eventLoop: any EventLoop) async throws(ExecStreamError) {
        let record = try self.store.container(id)
        guard self.store.markStarted(record.spec.id, now: Self.now()) else {
            throw ExecStreamError(code: .failedPrecondition, message: "container \"\(record.spec.id)\" is \(record.state), not created")
        }
        guard let main = record.spec.mainProcess else { return }
        do {
            try await self.spawn(record.spec, main: main, on: eventLoop)
        } catch {
            self.store.markStartFailed(record.spec.id)
            throw error
        }
    }

    /// Stops a running container: SIGTERM to its main process's group, SIGKILL after `grace`
    /// (at once for zero); returns once it has exited. A container that is not running is left
    /// as it is (a CREATED one becomes EXITED).
    func stop(_ id: String, grace: TimeAmount) async throws(ExecStreamError) {
        let record = try self.store.container(id)
        switch record.state {
        case .exited:
            return
        case .created:
            self.store.markStopping(record.spec.id)
            self.store.markExited(record.spec.id, exitCode: 0, now: Self.now())
            self.closeChannels(of: record.spec)
            return
        case .running:
            break
        }
        self.store.markStopping(record.spec.id)
        guard let main = self.mainProcess(of: record.spec.id) else {
            // No main process (or it is exiting now): the container ends here.
            if record.spec.mainProcess == nil {
                self.store.markExited(record.spec.id, exitCode: 0, now: Self.now())
            }
            _ = try? await self.store.waitForExit(record.spec.id)
            return
        }
        let (exited, continuation) = AsyncStream<Void>.makeStream()
        guard let token = self.observeExit(of: record.spec.id, { _ in continuation.finish() }) else { return }
        defer { self.removeObserver(token, of: record.spec.id) }
        let signal = grace > .zero ? SIGTERM : SIGKILL
        ProcessSpawner.signalGroup(of: main.pid, signal)
        let killer = grace > .zero ? self.timers.scheduleTask(in: grace) { ProcessSpawner.signalGroup(of: main.pid, SIGKILL) } : nil
        for await _ in exited {}
        killer?.cancel()
        // The store learns of the exit from the reaper's task; wait for that too.
        _ = try? await self.store.waitForExit(record.spec.id)
    }

    /// Stops `id` if it runs, then forgets it. Its output channels drain to their consumers and
    /// then disappear; its stdin channel closes.
    func remove(_ id: String, grace: TimeAmount) async throws(ExecStreamError) {
        let record = try self.store.container(id)
        try await self.stop(record.spec.id, grace: grace)
        self.closeChannels(of: record.spec)
        self.state.withLock { _ = $0.entries.removeValue(forKey: record.spec.id) }
        self.store.remove(record.spec.id)
    }

    /// The channels of `spec`'s main process: stdout, stderr unless it has a terminal, and stdin
    /// if it takes one.
    private static func channels(of spec: ContainerSpec) -> [IOChannelID] {
        guard let main = spec.mainProcess else { return [] }
        var streams: [StandardStream] = main.tty ? [.stdout] : [.stdout, .stderr]
        if main.stdin {
            streams.append(.stdin)
        }
        return streams.map { IOChannelID(owner: spec.id, stream: $0) }
    }

    private func registerChannels(of spec: ContainerSpec) {
        for id in Self.channels(of: spec) {
            _ = self.registry.register(id)
        }
    }

    /// Ends the channels: what is queued still drains, then end of stream. An output whose reader
    /// is still attached is left to reach end of file first (the process is gone, but its pipe may
    /// still hold what it wrote); only a background child holding it open past `outputDrainBound`
    /// has its reader stopped.
    private func closeChannels(of spec: ContainerSpec) {
        var stillReading: [IOChannelID] = []
        for id in Self.channels(of: spec) {
            if id.stream != .stdin, self.registry.snapshot(of: id)?.phase == .producing {
                stillReading.append(id)
            } else {
                self.registry.requestRemoval(id)
            }
        }
        guard !stillReading.isEmpty else { return }
        let registry = self.registry
        let ids = stillReading
        self.timers.scheduleTask(in: self.outputDrainBound) {
            for id in ids {
                registry.requestRemoval(id)
            }
        }
    }

    private static func now() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1_000_000_000)
    }

    /// How a process runs in `container`: its environment, directory, credentials, and for
    /// `namespaces` isolation the main process's namespaces. Throws if such a container's main
    /// process is not running.
    /// Throws `invalidArgument` if `arguments` with `container`'s environment could not be passed
    /// to a process: checked when a command is accepted, before anything is spawned.
    static func validateCommand(_ arguments: [String], in container: ContainerSpec) throws(ExecStreamError) {
        guard !arguments.isEmpty else { throw ExecStreamError(code: .invalidArgument, message: "missing required cmd") }
        try CommandLineLimits().validate(arguments: arguments, environment: container.environment)
    }

    func processConfiguration(in container: ContainerSpec, arguments: [String], stdio: ProcessConfiguration.Stdio) throws(ExecStreamError)
        -> ProcessConfiguration
    {
        try Self.validateCommand(arguments, in: container)
        var configuration = ProcessConfiguration(
            arguments: arguments,
            environment: container.environment,
            workingDirectory: container.workingDirectory,
            stdio: stdio,
            userID: container.userID,
            groupID: container.groupID
        )
        switch container.isolation {
        case .host:
            break
        case .namespaces:
            guard let main = self.mainProcess(of: container.id) else {
                throw ExecStreamError(code: .failedPrecondition, message: "container \"\(container.id)\" is not running")
            }
            configuration.namespaces = .joining(pid: main.pid)
        }
        return configuration
    }

    private func spawn(_ spec: ContainerSpec, main: MainProcessSpec, on eventLoop: any EventLoop) async throws(ExecStreamError) {
        let id = spec.id
        var configuration = ProcessConfiguration(
            arguments: main.command,
            environment: spec.environment,
            workingDirectory: spec.workingDirectory,
            stdio: main.tty ? .terminal(initialSize: nil) : .pipes(stdin: main.stdin, stdout: true, stderr: true),
            userID: spec.userID,
            groupID: spec.groupID
        )
        switch spec.isolation {
        case .host:
            break
        case .namespaces:
            guard geteuid() == 0 else {
                throw ExecStreamError(
                    code: .failedPrecondition,
                    message: "container \"\(id)\": namespaces isolation needs root (the server runs as uid \(geteuid()))"
                )
            }
            configuration.namespaces = .new(hostname: spec.name)
        }
        let process: SpawnedProcess
        do {
            process = try ProcessSpawner.spawn(configuration)
        } catch {
            throw ExecStreamError(code: .failedPrecondition, message: "container \"\(id)\": cannot start its main process: \(error.message)", cause: error)
        }
        self.state.withLock { state in
            state.entries[id] = Entry(process: MainProcess(pid: process.pid, terminal: process.terminal, spec: main), writer: nil)
        }
        await ProcessChannelWiring.wire(
            process, owner: id, tty: main.tty, stdin: main.stdin, registry: self.registry, on: eventLoop,
            outputsReady: { _ in },
            stdinReady: { writer in
                self.state.withLock { $0.entries[id]?.writer = writer }
            },
            exited: { status in self.exited(id, status: status) }
        )
        self.logger.info("main process started", metadata: ["container": "\(id)", "pid": "\(process.pid)"])
    }

    private func exited(_ id: String, status: ProcessExitStatus) {
        self.store.markExited(id, exitCode: Int32(status.remoteExitCode), now: Self.now())
        let (observers, writer, terminal) = self.state.withLock { state -> ([ExitObserver], ProcessInputWriter?, Int32?) in
            state.entries[id]?.exitStatus = status
            let observers = state.entries[id].map { Array($0.observers.values) } ?? []
            state.entries[id]?.observers = [:]
            let writer = state.entries[id]?.writer
            state.entries[id]?.writer = nil
            let terminal = state.entries[id]?.process.terminal
            state.entries[id]?.process.terminal = nil
            return (observers, writer, terminal)
        }
        self.logger.info("main process exited", metadata: ["container": "\(id)", "status": "\(status)"])
        // Nobody will read stdin again; output drains to attach clients, or is collected.
        writer?.close()
        self.registry.requestRemoval(IOChannelID(owner: id, stream: .stdin))
        if let terminal {
            close(terminal)
        }
        for observer in observers {
            observer(status)
        }
    }

    /// The running main process of `id`, if it has one that has not exited.
    func mainProcess(of id: String) -> MainProcess? {
        self.state.withLock { state in
            guard let entry = state.entries[id], entry.exitStatus == nil else { return nil }
            return entry.process
        }
    }

    /// Calls `observer` once when the main process of `id` exits (at once if it has). Returns a
    /// token for `removeObserver`; nil if `id` has no main process.
    func observeExit(of id: String, _ observer: @escaping ExitObserver) -> UInt64? {
        let (token, exited) = self.state.withLock { state -> (UInt64?, ProcessExitStatus?) in
            guard state.entries[id] != nil else { return (nil, nil) }
            if let status = state.entries[id]!.exitStatus {
                return (0, status)
            }
            state.nextObserver += 1
            state.entries[id]!.observers[state.nextObserver] = observer
            return (state.nextObserver, nil)
        }
        if let exited {
            observer(exited)
        }
        return token
    }

    /// Whether the channels of `id`'s main process still hold output bytes nobody has taken (it
    /// may have exited meanwhile): an attach can still take them, then the exit status.
    func hasUntakenOutput(of id: String) -> Bool {
        [StandardStream.stdout, .stderr].contains { stream in
            guard let snapshot = self.registry.snapshot(of: IOChannelID(owner: id, stream: stream)) else { return false }
            return snapshot.queuedByteCount + snapshot.inFlightByteCount > 0
        }
    }

    /// Forgets an observer (its session ended first).
    func removeObserver(_ token: UInt64, of id: String) {
        self.state.withLock { _ = $0.entries[id]?.observers.removeValue(forKey: token) }
    }

    /// Asks every main process still running to stop (SIGTERM to its group): attach sessions end
    /// with it instead of holding a graceful shutdown open. `stopAll` kills what is left.
    /// Kills the process group of every exec still running: a forced shutdown (a second signal)
    /// leaves nothing behind, whatever the session policy says about vanished clients.
    func killExecs() {
        for pid in self.execs.withLock({ $0 }) {
            ProcessSpawner.signalGroup(of: pid, SIGKILL)
        }
    }

    /// Execs whose process is running now.
    var runningExecCount: Int {
        self.execs.withLock { $0.count }
    }

    func terminateAll() {
        let running = self.state.withLock { state in
            state.entries.values.filter { $0.exitStatus == nil }.map(\.process.pid)
        }
        for pid in running {
            ProcessSpawner.signalGroup(of: pid, SIGTERM)
        }
    }

    /// Kills every main process still running (the server is stopping) and waits until each
    /// exit has been handled.
    func stopAll() async {
        let running = self.state.withLock { state in
            state.entries.filter { $0.value.exitStatus == nil }.map { ($0.key, $0.value.process.pid) }
        }
        await withTaskGroup(of: Void.self) { group in
            for (id, pid) in running {
                let (exited, continuation) = AsyncStream<Void>.makeStream()
                guard self.observeExit(of: id, { _ in continuation.finish() }) != nil else { continue }
                ProcessSpawner.signalGroup(of: pid, SIGKILL)
                group.addTask {
                    for await _ in exited {}
                }
            }
        }
    }
}

extension ContainerSupervisor {
    /// The processes of `container`, as its exec and attach sessions see them.
    func processes(of container: ContainerSpec) -> some SessionProcessHost {
        ContainerProcesses(supervisor: self, container: container)
    }
}

/// One container's processes, as its sessions see them: the supervisor, narrowed to it.
private struct ContainerProcesses: SessionProcessHost {
    let supervisor: ContainerSupervisor
    let container: ContainerSpec

    func processConfiguration(arguments: [String], stdio: ProcessConfiguration.Stdio) throws(ExecStreamError) -> ProcessConfiguration {
        try self.supervisor.processConfiguration(in: self.container, arguments: arguments, stdio: stdio)
    }

    var mainProcessTerminal: Int32? {
        self.supervisor.mainProcess(of: self.container.id)?.terminal
    }

    func observeMainProcessExit(_ observer: @escaping @Sendable (ProcessExitStatus) -> Void) -> UInt64? {
        self.supervisor.observeExit(of: self.container.id, observer)
    }

    func removeMainProcessObserver(_ token: UInt64) {
        self.supervisor.removeObserver(token, of: self.container.id)
    }

    func execStarted(pid: Int32) {
        self.supervisor.execs.withLock { _ = $0.insert(pid) }
    }

    func execExited(pid: Int32) {
        self.supervisor.execs.withLock { _ = $0.remove(pid) }
    }
}
