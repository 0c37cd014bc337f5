public import ExecStreamCore
import ExecStreamProcess
import Synchronization

/// How a container's processes are isolated.
public enum ContainerIsolation: String, Hashable, Sendable, CaseIterable {
    /// Processes run in the server's own namespaces.
    case host
    /// The main process gets new mount/pid/uts/ipc namespaces; execs join them (as root).
    case namespaces
}

/// A container's main process: what `attach` joins.
public struct MainProcessSpec: Hashable, Sendable {
    /// The command and its arguments.
    public var command: [String]
    /// A terminal instead of pipes.
    public var tty: Bool
    /// Whether it has stdin (attach clients write to it).
    public var stdin: Bool
    /// Close its stdin when the first attach client that wrote stdin leaves (CRI `stdin_once`).
    public var stdinOnce: Bool

    public init(command: [String], tty: Bool = false, stdin: Bool = true, stdinOnce: Bool = false) {
        self.command = command
        self.tty = tty
        self.stdin = stdin
        self.stdinOnce = stdinOnce
    }
}

/// What a container is declared with (config file, `--container`, or the container API).
public struct ContainerSpec: Hashable, Sendable {
    /// A stable id; CRI calls name it.
    public var id: String
    /// A human name (CRI `metadata.name`).
    public var name: String
    /// Labels, for `ListContainers` filters.
    public var labels: [String: String]
    /// Isolation of its processes.
    public var isolation: ContainerIsolation
    /// Environment every process in it gets (`NAME=value`).
    public var environment: [String]
    /// Working directory of its processes, if not the server's.
    public var workingDirectory: String?
    /// The user its processes run as, if not the server's.
    public var userID: UInt32?
    /// The group its processes run as, if not the server's.
    public var groupID: UInt32?
    /// Its main process, started with the server; nil for a container that only runs execs.
    public var mainProcess: MainProcessSpec?
    /// What CRI reports as its image and image ref. ExecStream runs no images, but clients require
    /// the fields (the kubelet's status check refuses an empty one): `execstream/<isolation>` by
    /// default.
    public var image: String?

    /// The image CRI reports.
    public var reportedImage: String { self.image ?? "execstream/\(self.isolation.rawValue)" }

    public init(
        id: String,
        name: String? = nil,
        labels: [String: String] = [:],
        isolation: ContainerIsolation = .host,
        environment: [String] = ContainerSpec.defaultEnvironment,
        workingDirectory: String? = nil,
        userID: UInt32? = nil,
        groupID: UInt32? = nil,
        mainProcess: MainProcessSpec? = nil,
        image: String? = nil
    ) {
        self.id = id
        self.name = name ?? id
        self.labels = labels
        self.isolation = isolation
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.userID = userID
        self.groupID = groupID
        self.mainProcess = mainProcess
        self.image = image
    }
}

extension ContainerSpec {
    /// The environment of a container that declares none: PATH and TERM.
    public static let defaultEnvironment = ProcessConfiguration.defaultEnvironment

    /// Refuses a declaration no container can have: an id that is empty, too long, or not
    /// `[A-Za-z0-9][A-Za-z0-9_.-]*` (ids name channels and appear in URLs); a main process without
    /// a command; `namespaces` isolation without a main process (its namespaces are the main
    /// process's).
    public func validate() throws(ExecStreamError) {
        let allowed = { (byte: UInt8) in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
        let bytes = Array(self.id.utf8)
        guard let first = bytes.first, allowed(first), bytes.count <= 128,
            bytes.allSatisfy({ allowed($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") })
        else {
            throw ExecStreamError(code: .invalidArgument, message: "container id \"\(self.id)\" must match [A-Za-z0-9][A-Za-z0-9_.-]* (at most 128 characters)")
        }
        if let main = self.mainProcess, main.command.isEmpty {
            throw ExecStreamError(code: .invalidArgument, message: "container \"\(self.id)\": its main process needs a command")
        }
        try CommandLineLimits().validate(arguments: self.mainProcess?.command ?? [], environment: self.environment)
        if self.isolation == .namespaces && self.mainProcess == nil {
            throw ExecStreamError(
                code: .invalidArgument,
                message: "container \"\(self.id)\": namespaces isolation needs a main process (its namespaces are the main process's)"
            )
        }
    }
}

/// Where a container is in its life.
public enum ContainerState: Hashable, Sendable {
    /// Declared; its channels exist, its main process has not started.
    case created
    /// Started: its main process runs (a container without one runs until stopped).
    case running
    /// Its main process exited, or it was stopped.
    case exited
}

/// A container as CRI and the container API report it.
public struct ContainerRecord: Hashable, Sendable {
    /// Its declaration.
    public var spec: ContainerSpec
    /// Where it is in its life.
    public var state: ContainerState
    /// Nanoseconds since the epoch when it was declared.
    public var createdAt: Int64
    /// Nanoseconds since the epoch when it started.
    public var startedAt: Int64?
    /// The main process's exit code (0 for a container without one that was stopped).
    public var exitCode: Int32?
    /// Nanoseconds since the epoch when it exited.
    public var finishedAt: Int64?
    /// Why it exited: "Completed" (code 0), "Error", or "Stopped" (by Stop or Remove).
    public var reason: String?

    /// True while it runs.
    public var isRunning: Bool { self.state == .running }
}

/// Every declared container, by id. Thread-safe.
public final class ContainerStore: Sendable {
    private struct State {
        var containers: [String: ContainerRecord] = [:]
        /// Waiting for a container to exit (or to be removed).
        var exitWaiters: [String: [CheckedContinuation<ContainerRecord?, Never>]] = [:]
        /// Containers being stopped: their exit is reported as "Stopped".
        var stopping: Set<String> = []
    }

    private let state = Mutex(State())

    public init() {}

    /// Declares a container, CREATED; an existing id is an error.
    public func add(_ spec: ContainerSpec, now: Int64) throws(ExecStreamError) {
        try self.state.withLock { (state: inout State) throws(ExecStreamError) in
            guard state.containers[spec.id] == nil else {
                throw ExecStreamError(code: .alreadyExists, message: "container \"\(spec.id)\" already exists")
            }
            state.containers[spec.id] = ContainerRecord(spec: spec, state: .created, createdAt: now)
        }
    }

    /// The container `id`, by id or else by unique name (crictl accepts either).
    public func container(_ idOrName: String) throws(ExecStreamError) -> ContainerRecord {
        let found = self.state.withLock { state -> ContainerRecord? in
            state.containers[idOrName] ?? state.containers.values.first { $0.spec.name == idOrName }
        }
        guard let found else {
            throw ExecStreamError(code: .notFound, message: "container \"\(idOrName)\" not found")
        }
        return found
    }

    /// Moves `id` from CREATED to RUNNING; false if it was not CREATED (someone else started it).
    public func markStarted(_ id: String, now: Int64) -> Bool {
        self.state.withLock { state in
            guard state.containers[id]?.state == .created else { return false }
            state.containers[id]?.state = .running
            state.containers[id]?.startedAt = now
            return true
        }
    }

    /// Moves `id` back to CREATED after a start that failed.
    func markStartFailed(_ id: String) {
        self.state.withLock { state in
            guard state.containers[id]?.state == .running else { return }
            state.containers[id]?.state = .created
            state.containers[id]?.startedAt = nil
        }
    }

    /// The next exit of `id` is a stop's doing.
    func markStopping(_ id: String) {
        self.state.withLock { _ = $0.stopping.insert(id) }
    }

    /// Records that `id` exited at `now` (its main process ended, or it was stopped).
    public func markExited(_ id: String, exitCode: Int32, now: Int64) {
        let (record, waiters) = self.state.withLock { state -> (ContainerRecord?, [CheckedContinuation<ContainerRecord?, Never>]) in
            guard var record = state.containers[id], record.state != .exited else { return (nil, []) }
            record.state = .exited
            record.exitCode = exitCode
            record.finishedAt = now
            record.reason = state.stopping.remove(id) != nil ? "Stopped" : (exitCode == 0 ? "Completed" : "Error")
            state.containers[id] = record
            return (record, state.exitWaiters.removeValue(forKey: id) ?? [])
        }
        waiters.forEach { $0.resume(returning: record) }
    }

    /// Forgets `id`; its waiters learn that it is gone.
    @discardableResult
    func remove(_ id: String) -> ContainerRecord? {
        let (record, waiters) = self.state.withLock { state in
            state.stopping.remove(id)
            return (state.containers.removeValue(forKey: id), state.exitWaiters.removeValue(forKey: id) ?? [])
        }
        waiters.forEach { $0.resume(returning: record) }
        return record
    }

    /// Returns once `id` has exited (at once if it has), with its record; nil if it was removed
    /// first. Throws if there is no such container.
    func waitForExit(_ id: String) async throws(ExecStreamError) -> ContainerRecord? {
        _ = try self.container(id)
        return await withCheckedContinuation { (continuation: CheckedContinuation<ContainerRecord?, Never>) in
            let immediate = self.state.withLock { state -> ContainerRecord?? in
                guard let record = state.containers[id] else { return .some(nil) }
                if record.state == .exited { return .some(record) }
                state.exitWaiters[id, default: []].append(continuation)
                return .none
            }
            if case .some(let record) = immediate {
                continuation.resume(returning: record)
            }
        }
    }

    /// Every container, sorted by id.
    public func all() -> [ContainerRecord] {
        self.state.withLock { Array($0.containers.values) }.sorted { $0.spec.id < $1.spec.id }
    }
}
