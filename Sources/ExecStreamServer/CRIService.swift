import ExecStreamCore
import ExecStreamProcess
import ExecStreamProtos
import Foundation
import GRPCCore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Where streaming URLs point: an absolute `http://` or `https://` URL, never a wildcard address.
final class AdvertisedStreamingAddress: Sendable {
    private let baseURL = Mutex<String?>(nil)

    /// Derives the base URL from the first data-plane TCP listener, else the first control-plane
    /// one (a wildcard becomes loopback), unless an explicit host was configured.
    func set(from listeners: [BoundListener], override host: String?) {
        let tcp = listeners.filter { $0.baseURL != nil }
        guard let chosen = tcp.first(where: { !$0.access.servesControlPlane }) ?? tcp.first,
            case .tcp(let boundHost, let port) = chosen.address
        else { return }
        var advertised = host ?? boundHost
        if advertised == "0.0.0.0" { advertised = "127.0.0.1" }
        if advertised == "::" { advertised = "::1" }
        let authority = advertised.contains(":") ? "[\(advertised)]:\(port)" : "\(advertised):\(port)"
        let scheme = chosen.access.usesTLS ? "https" : "http"
        self.baseURL.withLock { $0 = "\(scheme)://\(authority)" }
    }

    func url(kind: StreamingRequestKind, token: StreamingToken) throws(ExecStreamError) -> String {
        guard let base = self.baseURL.withLock({ $0 }) else {
            throw ExecStreamError(code: .failedPrecondition, message: "no TCP listener to stream on; add --listen HOST:PORT")
        }
        return "\(base)/\(kind.rawValue)/\(token.rawValue)"
    }
}

/// CRI `runtime.v1.RuntimeService`: version, ExecSync, the streaming calls' URLs, containers.
final class CRIRuntimeService: Runtime_V1_RuntimeService.SimpleServiceProtocol, Sendable {
    private let containers: ContainerStore
    private let requests: StreamingRequestCache
    private let advertised: AdvertisedStreamingAddress
    private let execSyncOutputLimit: Int
    private let maxMessageBytes: Int
    private let supervisor: ContainerSupervisor
    private let metrics: ServerMetrics
    private let audit: AuditLog

    init(
        containers: ContainerStore,
        requests: StreamingRequestCache,
        advertised: AdvertisedStreamingAddress,
        execSyncOutputLimit: Int,
        maxMessageBytes: Int,
        supervisor: ContainerSupervisor,
        metrics: ServerMetrics,
        audit: AuditLog
    ) {
        self.supervisor = supervisor
        self.metrics = metrics
        self.audit = audit
        self.maxMessageBytes = maxMessageBytes
        self.containers = containers
        self.requests = requests
        self.advertised = advertised
        self.execSyncOutputLimit = execSyncOutputLimit
    }

    func version(request: Runtime_V1_VersionRequest, context: ServerContext) async throws -> Runtime_V1_VersionResponse {
        .with {
            $0.version = "0.1.0"
            $0.runtimeName = ExecStreamVersion.runtimeName
            $0.runtimeVersion = ExecStreamVersion.runtimeVersion
            $0.runtimeApiVersion = ExecStreamVersion.criAPIVersion
        }
    }

    // MARK: ExecSync

    /// With the dropped-byte counts of a truncated output in trailing metadata.
    func execSync(
        request: ServerRequest<Runtime_V1_ExecSyncRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Runtime_V1_ExecSyncResponse> {
        let (response, trailers) = try await self.observedExecSync(request.message, context: context)
        return ServerResponse(message: response, trailingMetadata: trailers)
    }

    func execSync(request: Runtime_V1_ExecSyncRequest, context: ServerContext) async throws -> Runtime_V1_ExecSyncResponse {
        try await self.observedExecSync(request, context: context).response
    }

    /// Runs an ExecSync, counts how it ended and writes its audit line.
    private func observedExecSync(_ request: Runtime_V1_ExecSyncRequest, context: ServerContext) async throws
        -> (response: Runtime_V1_ExecSyncResponse, trailers: Metadata)
    {
        let start = ContinuousClock.now
        let outcome: String
        var exitCode: Int32?
        defer {
            let duration = ContinuousClock.now - start
            self.metrics.execSyncEnded(outcome: outcome, duration: duration)
            var extra: Logger.Metadata = ["durationMs": .stringConvertible(Int(duration / .milliseconds(1)))]
            if let exitCode { extra["exitCode"] = .stringConvertible(Int(exitCode)) }
            self.audit.call("ExecSync", context: context, container: request.containerID, command: request.cmd, outcome: outcome, extra)
        }
        do {
            let result = try await self.runExecSync(request)
            exitCode = result.response.exitCode
            outcome = result.response.exitCode == 0 ? "exit_zero" : "exit_nonzero"
            return result
        } catch let error as RPCError where error.code == .deadlineExceeded {
            outcome = "timeout"
            throw error
        } catch let error as RPCError where (error.cause as? ProcessError)?.shellExitCode != nil {
            outcome = "not_started"
            exitCode = (error.cause as? ProcessError)?.shellExitCode.map(Int32.init)
            throw error
        } catch {
            outcome = "error"
            throw error
        }
    }

    private func runExecSync(_ request: Runtime_V1_ExecSyncRequest) async throws -> (response: Runtime_V1_ExecSyncResponse, trailers: Metadata) {
        let container = try self.runningContainer(request.containerID)
        let process: SpawnedProcess
        do {
            let configuration = try self.supervisor.processConfiguration(
                in: container.spec,
                arguments: request.cmd,
                stdio: .pipes(stdin: false, stdout: true, stderr: true)
            )
            let spawnStarted = ContinuousClock.now
            process = try ProcessSpawner.spawn(configuration)
            self.metrics.spawned(after: .now - spawnStarted, kind: "execsync")
        } catch let error as ExecStreamError {
            throw RPCError(error)
        } catch let error as ProcessError {
            throw RPCError(error)
        }
        // Neither stream alone may outgrow the message; together they are fitted below.
        let limit = min(self.execSyncOutputLimit, ExecSyncOutputBudget.outputBytes(maxMessageBytes: self.maxMessageBytes))
        async let stdout = OutputCollector.collect(fd: process.stdout!, streamName: "stdout", limit: limit)
        async let stderr = OutputCollector.collect(fd: process.stderr!, streamName: "stderr", limit: limit)
        let status: ProcessExitStatus
        if request.timeout > 0 {
            let exited = ManagedExit(pidfd: process.pidfd)
            guard let finished = await exited.wait(timeout: .seconds(request.timeout)) else {
                // Kill the whole group (the command's own children too), reap it, then report.
                ProcessSpawner.signalGroup(of: process.pid, SIGKILL)
                if let killed = await exited.wait(timeout: nil) {
                    self.metrics.processExited(killed, kind: "execsync")
                }
                _ = await (stdout, stderr)
                let name = CommandLineLimits.displayed(request.cmd[0])
                throw RPCError(code: .deadlineExceeded, message: "command \"\(name)\" timed out after \(request.timeout)s")
            }
            status = finished
        } else {
            status = await ProcessReaper.shared.waitForExit(pidfd: process.pidfd)
        }
        self.metrics.processExited(status, kind: "execsync")
        let (stdoutCapture, stderrCapture) = await (stdout, stderr)
        let limits = ExecSyncOutputBudget.limits(
            stdout: stdoutCapture.result().bytes.readableBytes,
            stderr: stderrCapture.result().bytes.readableBytes,
            maxMessageBytes: self.maxMessageBytes
        )
        let out = stdoutCapture.result(limit: limits.stdout)
        let err = stderrCapture.result(limit: limits.stderr)
        var trailers = Metadata()
        trailers.addString(String(out.droppedByteCount), forKey: "execstream-stdout-dropped-bytes")
        trailers.addString(String(err.droppedByteCount), forKey: "execstream-stderr-dropped-bytes")
        let response = Runtime_V1_ExecSyncResponse.with {
            $0.stdout = Data(out.bytes.readableBytesView)
            $0.stderr = Data(err.bytes.readableBytesView)
            $0.exitCode = Int32(status.remoteExitCode)
        }
        return (response, trailers)
    }

    // MARK: Streaming requests

    func exec(request: Runtime_V1_ExecRequest, context: ServerContext) async throws -> Runtime_V1_ExecResponse {
        try Self.validateStreams(containerID: request.containerID, tty: request.tty, stdin: request.stdin, stdout: request.stdout, stderr: request.stderr)
        guard !request.cmd.isEmpty else { throw RPCError(ExecStreamError(code: .invalidArgument, message: "missing required cmd")) }
        let container = try self.runningContainer(request.containerID)
        do {
            try ContainerSupervisor.validateCommand(request.cmd, in: container.spec)
        } catch {
            throw RPCError(error)
        }
        let url = try self.issue(
            .exec(containerID: container.spec.id, command: request.cmd, tty: request.tty, stdin: request.stdin, stdout: request.stdout, stderr: request.stderr),
            kind: .exec
        )
        self.audit.call("Exec", context: context, container: container.spec.id, command: request.cmd, outcome: "url_issued")
        return .with { $0.url = url }
    }

    func attach(request: Runtime_V1_AttachRequest, context: ServerContext) async throws -> Runtime_V1_AttachResponse {
        try Self.validateStreams(containerID: request.containerID, tty: request.tty, stdin: request.stdin, stdout: request.stdout, stderr: request.stderr)
        // A main process that exited before its output was taken can still be attached to: the
        // output, then the exit status (a resumable attach that lost its connection needs it).
        let container = try self.runningContainer(request.containerID, orDraining: true)
        guard container.spec.mainProcess != nil else {
            throw RPCError(ExecStreamError(code: .failedPrecondition, message: "container \"\(container.spec.id)\" has no main process to attach to"))
        }
        let url = try self.issue(
            .attach(containerID: container.spec.id, tty: request.tty, stdin: request.stdin, stdout: request.stdout, stderr: request.stderr),
            kind: .attach
        )
        self.audit.call("Attach", context: context, container: container.spec.id, outcome: "url_issued")
        return .with { $0.url = url }
    }

    func portForward(request: Runtime_V1_PortForwardRequest, context: ServerContext) async throws -> Runtime_V1_PortForwardResponse {
        guard !request.podSandboxID.isEmpty else {
            throw RPCError(ExecStreamError(code: .invalidArgument, message: "missing required pod_sandbox_id"))
        }
        let sandbox = try self.existingContainer(request.podSandboxID)
        let url = try self.issue(.portForward(sandboxID: sandbox.spec.id, ports: request.port), kind: .portForward)
        self.audit.call("PortForward", context: context, container: sandbox.spec.id, outcome: "url_issued", ["ports": "\(request.port)"])
        return .with { $0.url = url }
    }

    /// The kubelet streaming library's checks, with its messages.
    private static func validateStreams(containerID: String, tty: Bool, stdin: Bool, stdout: Bool, stderr: Bool) throws {
        if containerID.isEmpty {
            throw RPCError(ExecStreamError(code: .invalidArgument, message: "missing required container_id"))
        }
        if tty && stderr {
            throw RPCError(ExecStreamError(code: .invalidArgument, message: "tty and stderr cannot both be true"))
        }
        if !stdin && !stdout && !stderr {
            throw RPCError(ExecStreamError(code: .invalidArgument, message: "one of stdin, stdout, or stderr must be set"))
        }
    }

    private func issue(_ request: StreamingRequest, kind: StreamingRequestKind) throws -> String {
        do {
            let token = try self.requests.insert(request, kind: kind)
            return try self.advertised.url(kind: kind, token: token)
        } catch {
            throw RPCError(error)
        }
    }

    // MARK: Containers

    func listContainers(request: Runtime_V1_ListContainersRequest, context: ServerContext) async throws -> Runtime_V1_ListContainersResponse {
        let filter = request.hasFilter ? request.filter : nil
        let matching = self.containers.all().filter { record in
            guard let filter else { return true }
            if !filter.id.isEmpty && !record.spec.id.hasPrefix(filter.id) { return false }
            if !filter.podSandboxID.isEmpty && filter.podSandboxID != record.spec.id { return false }
            if filter.hasState && filter.state.state != Self.state(of: record) { return false }
            return filter.labelSelector.allSatisfy { record.spec.labels[$0.key] == $0.value }
        }
        return .with { $0.containers = matching.map(Self.container(from:)) }
    }

    func containerStatus(request: Runtime_V1_ContainerStatusRequest, context: ServerContext) async throws -> Runtime_V1_ContainerStatusResponse {
        guard !request.containerID.isEmpty else {
            throw RPCError(ExecStreamError(code: .invalidArgument, message: "missing required container_id"))
        }
        let record = try self.existingContainer(request.containerID)
        return .with {
            $0.status = .with { status in
                status.id = record.spec.id
                status.metadata = .with { $0.name = record.spec.name }
                status.state = Self.state(of: record)
                status.createdAt = record.createdAt
                status.startedAt = record.startedAt ?? 0
                status.exitCode = record.exitCode ?? 0
                status.finishedAt = record.finishedAt ?? 0
                status.reason = record.reason ?? ""
                status.labels = record.spec.labels
                status.image = .with { $0.image = record.spec.reportedImage }
                status.imageRef = record.spec.reportedImage
            }
        }
    }

    private static func state(of record: ContainerRecord) -> Runtime_V1_ContainerState {
        switch record.state {
        case .created: .containerCreated
        case .running: .containerRunning
        case .exited: .containerExited
        }
    }

    private static func container(from record: ContainerRecord) -> Runtime_V1_Container {
        .with {
            $0.id = record.spec.id
            $0.podSandboxID = record.spec.id
            $0.metadata = .with { $0.name = record.spec.name }
            $0.state = Self.state(of: record)
            $0.createdAt = record.createdAt
            $0.labels = record.spec.labels
            // No images here, but clients (crictl ps) dereference the field: always present.
            $0.image = .with { $0.image = record.spec.reportedImage }
            $0.imageRef = record.spec.reportedImage
        }
    }

    private func existingContainer(_ id: String) throws -> ContainerRecord {
        do {
            return try self.containers.container(id)
        } catch {
            throw RPCError(error)
        }
    }

    private func runningContainer(_ id: String, orDraining: Bool = false) throws -> ContainerRecord {
        if id.isEmpty {
            throw RPCError(ExecStreamError(code: .invalidArgument, message: "missing required container_id"))
        }
        let record = try self.existingContainer(id)
        guard record.isRunning || (orDraining && record.state == .exited && self.supervisor.hasUntakenOutput(of: id)) else {
            throw RPCError(ExecStreamError(code: .failedPrecondition, message: "container \"\(id)\" is not running"))
        }
        return record
    }
}

/// CRI `runtime.v1.ImageService`: ExecStream has no images; crictl only checks that it answers.
final class CRIImageService: Runtime_V1_ImageService.SimpleServiceProtocol, Sendable {
    func imageFsInfo(request: Runtime_V1_ImageFsInfoRequest, context: ServerContext) async throws -> Runtime_V1_ImageFsInfoResponse {
        Runtime_V1_ImageFsInfoResponse()
    }
}

/// Waits for a child's exit, optionally bounded by a timeout, without losing the exit.
private final class ManagedExit: Sendable {
    private let task: Task<ProcessExitStatus, Never>

    init(pidfd: Int32) {
        self.task = Task { await ProcessReaper.shared.waitForExit(pidfd: pidfd) }
    }

    /// The exit status, or nil if `timeout` passed first (the wait itself continues).
    ///
    /// A race resolved by one continuation resumed once: a task group would also wait for the
    /// losing child, and awaiting another task's value does not respond to cancellation.
    func wait(timeout: Duration?) async -> ProcessExitStatus? {
        guard let timeout else { return await self.task.value }
        let exitTask = self.task
        let slot = Mutex<CheckedContinuation<ProcessExitStatus?, Never>?>(nil)
        let resume: @Sendable (ProcessExitStatus?) -> Void = { value in
            slot.withLock { continuation in
                continuation?.resume(returning: value)
                continuation = nil
            }
        }
        var timer: Task<Void, Never>?
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<ProcessExitStatus?, Never>) in
            slot.withLock { $0 = continuation }
            Task { resume(await exitTask.value) }
            timer = Task {
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                resume(nil)
            }
        }
        timer?.cancel()
        return result
    }
}

/// Reads a pipe to its end on an event loop into a bounded capture.
enum OutputCollector {
    static func collect(fd: Int32, streamName: String, limit: Int) async -> BoundedOutputCapture {
        let promise = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: BoundedOutputCapture.self)
        do {
            _ = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(CaptureHandler(streamName: streamName, limit: limit, promise: promise))
                    }
                }
                .takingOwnershipOfDescriptor(input: fd)
                .get()
        } catch {
            close(fd)
            return BoundedOutputCapture(streamName: streamName, limit: limit)
        }
        return (try? await promise.futureResult.get()) ?? BoundedOutputCapture(streamName: streamName, limit: limit)
    }

    private final class CaptureHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        private var capture: BoundedOutputCapture
        private let promise: EventLoopPromise<BoundedOutputCapture>

        init(streamName: String, limit: Int, promise: EventLoopPromise<BoundedOutputCapture>) {
            self.capture = BoundedOutputCapture(streamName: streamName, limit: limit)
            self.promise = promise
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.capture.append(self.unwrapInboundIn(data))
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.promise.succeed(self.capture)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
