import ExecStreamCore
import ExecStreamProtos
import GRPCCore
import NIOCore

/// `execstream.v1.Containers`: sandbox runtimes declare, start, stop, remove, list and wait for
/// containers while the server runs. A container's channels exist from Create on, so its IO
/// streams can attach before Start and miss nothing.
final class ContainerService: Execstream_V1_Containers.SimpleServiceProtocol, Sendable {
    private let store: ContainerStore
    private let supervisor: ContainerSupervisor
    private let eventLoops: any EventLoopGroup
    private let audit: AuditLog

    init(store: ContainerStore, supervisor: ContainerSupervisor, eventLoops: any EventLoopGroup, audit: AuditLog) {
        self.store = store
        self.supervisor = supervisor
        self.eventLoops = eventLoops
        self.audit = audit
    }

    func create(request: Execstream_V1_CreateContainerRequest, context: ServerContext) async throws -> Execstream_V1_CreateContainerResponse {
        let spec = Self.spec(from: request.spec)
        try await self.audited("Create", context: context, container: spec.id, command: spec.mainProcess?.command) {
            try spec.validate()
            try self.supervisor.create(spec)
        }
        return .with { $0.container = Self.container(try? self.store.container(spec.id)) }
    }

    func start(request: Execstream_V1_StartContainerRequest, context: ServerContext) async throws -> Execstream_V1_StartContainerResponse {
        let id = try Self.required(request.id)
        try await self.audited("Start", context: context, container: id) { try await self.supervisor.start(id, on: self.eventLoops.any()) }
        return .with { $0.container = Self.container(try? self.store.container(id)) }
    }

    func stop(request: Execstream_V1_StopContainerRequest, context: ServerContext) async throws -> Execstream_V1_StopContainerResponse {
        let id = try Self.required(request.id)
        try await self.audited("Stop", context: context, container: id) { try await self.supervisor.stop(id, grace: try Self.grace(request.timeoutSeconds)) }
        return .with { $0.container = Self.container(try? self.store.container(id)) }
    }

    func remove(request: Execstream_V1_RemoveContainerRequest, context: ServerContext) async throws -> Execstream_V1_RemoveContainerResponse {
        let id = try Self.required(request.id)
        try await self.audited("Remove", context: context, container: id) { try await self.supervisor.remove(id, grace: try Self.grace(request.timeoutSeconds)) }
        return Execstream_V1_RemoveContainerResponse()
    }

    /// Runs a call that changes a container (the one error mapping) and writes its audit line:
    /// `ok`, or the gRPC code it failed with.
    private func audited(
        _ method: String,
        context: ServerContext,
        container: String,
        command: [String]? = nil,
        _ body: () async throws -> Void
    ) async throws {
        do {
            try await Self.mapping(body)
            self.audit.call("Containers/\(method)", context: context, container: container, command: command, outcome: "ok")
        } catch let error as RPCError {
            self.audit.call("Containers/\(method)", context: context, container: container, command: command, outcome: "\(error.code)")
            throw error
        }
    }

    func list(request: Execstream_V1_ListContainersRequest, context: ServerContext) async throws -> Execstream_V1_ListContainersResponse {
        .with { $0.containers = self.store.all().map { Self.container($0) } }
    }

    func wait(request: Execstream_V1_WaitContainerRequest, context: ServerContext) async throws -> Execstream_V1_WaitContainerResponse {
        let id = try Self.required(request.id)
        let record = try await Self.mapping { try await self.store.waitForExit(id) }
        guard let record else {
            throw RPCError(ExecStreamError(code: .notFound, message: "container \"\(id)\" was removed before it exited"))
        }
        return .with { $0.container = Self.container(record) }
    }

    // MARK: Mapping

    /// Runs `body`, turning the core's errors into their gRPC status (the one mapping).
    private static func mapping<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ExecStreamError {
            throw RPCError(error)
        }
    }

    private static func required(_ id: String) throws -> String {
        guard !id.isEmpty else { throw RPCError(ExecStreamError(code: .invalidArgument, message: "missing required id")) }
        return id
    }

    private static func grace(_ seconds: Int64) throws(ExecStreamError) -> TimeAmount {
        guard seconds >= 0, seconds <= 86_400 else {
            throw ExecStreamError(code: .invalidArgument, message: "timeout_seconds must be between 0 and 86400, not \(seconds)")
        }
        return .seconds(seconds)
    }

    static func spec(from message: Execstream_V1_ContainerSpec) -> ContainerSpec {
        ContainerSpec(
            id: message.id,
            name: message.name.isEmpty ? nil : message.name,
            labels: message.labels,
            isolation: message.isolation == .namespaces ? .namespaces : .host,
            environment: message.env.isEmpty ? ContainerSpec.defaultEnvironment : message.env,
            workingDirectory: message.workingDir.isEmpty ? nil : message.workingDir,
            userID: message.hasUser ? message.user : nil,
            groupID: message.hasGroup ? message.group : nil,
            mainProcess: message.hasMain
                ? MainProcessSpec(command: message.main.command, tty: message.main.tty, stdin: message.main.stdin, stdinOnce: message.main.stdinOnce)
                : nil,
            image: message.image.isEmpty ? nil : message.image
        )
    }

    static func container(_ record: ContainerRecord?) -> Execstream_V1_Container {
        guard let record else { return Execstream_V1_Container() }
        return .with {
            $0.spec = .with { spec in
                spec.id = record.spec.id
                spec.name = record.spec.name
                spec.labels = record.spec.labels
                spec.isolation = record.spec.isolation == .namespaces ? .namespaces : .host
                spec.env = record.spec.environment
                spec.workingDir = record.spec.workingDirectory ?? ""
                if let user = record.spec.userID { spec.user = user }
                if let group = record.spec.groupID { spec.group = group }
                if let main = record.spec.mainProcess {
                    spec.main = .with {
                        $0.command = main.command
                        $0.tty = main.tty
                        $0.stdin = main.stdin
                        $0.stdinOnce = main.stdinOnce
                    }
                }
                spec.image = record.spec.reportedImage
            }
            switch record.state {
            case .created: $0.state = .created
            case .running: $0.state = .running
            case .exited: $0.state = .exited
            }
            $0.createdAt = record.createdAt
            $0.startedAt = record.startedAt ?? 0
            $0.finishedAt = record.finishedAt ?? 0
            $0.exitCode = record.exitCode ?? 0
            $0.reason = record.reason ?? ""
        }
    }
}
