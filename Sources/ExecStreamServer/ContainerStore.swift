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
}

/// A container as CRI reports it.
public struct ContainerRecord: Hashable, Sendable {
    /// Its declaration.
    public var spec: ContainerSpec
    /// Nanoseconds since the epoch when it was declared.
    public var createdAt: Int64
    /// Running until its main process exits (a container without one runs until removed).
    public var isRunning: Bool
    /// The main process's exit code, once it exited.
    public var exitCode: Int32?
    /// Nanoseconds since the epoch when the main process exited.
    public var finishedAt: Int64?
}

/// Every declared container, by id. Thread-safe.
public final class ContainerStore: Sendable {
    private let containers = Mutex([String: ContainerRecord]())

    public init() {}

    /// Declares a container; an existing id is an error.
    public func add(_ spec: ContainerSpec, now: Int64) throws(ExecStreamError) {
        try self.containers.withLock { (containers: inout [String: ContainerRecord]) throws(ExecStreamError) in
            guard containers[spec.id] == nil else {
                throw ExecStreamError(code: .alreadyExists, message: "container \"\(spec.id)\" already exists")
            }
            containers[spec.id] = ContainerRecord(spec: spec, createdAt: now, isRunning: true, exitCode: nil, finishedAt: nil)
        }
    }

    /// The container `id`, by id or else by unique name (crictl accepts either).
    public func container(_ idOrName: String) throws(ExecStreamError) -> ContainerRecord {
        let found = self.containers.withLock { containers -> ContainerRecord? in
            containers[idOrName] ?? containers.values.first { $0.spec.name == idOrName }
        }
        guard let found else {
            throw ExecStreamError(code: .notFound, message: "container \"\(idOrName)\" not found")
        }
        return found
    }

    /// Records that the main process of `id` exited at `now`: the container is no longer running.
    public func markExited(_ id: String, exitCode: Int32, now: Int64) {
        self.containers.withLock { containers in
            containers[id]?.isRunning = false
            containers[id]?.exitCode = exitCode
            containers[id]?.finishedAt = now
        }
    }

    /// Every container, sorted by id.
    public func all() -> [ContainerRecord] {
        self.containers.withLock { Array($0.values) }.sorted { $0.spec.id < $1.spec.id }
    }
}
