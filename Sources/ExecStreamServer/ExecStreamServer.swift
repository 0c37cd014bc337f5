import ExecStreamCore
import ExecStreamRemoteCommand
import ExecStreamHTTP1
import Foundation
import ExecStreamHTTP2
import ExecStreamProtos
import GRPCCore
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
public import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The ExecStream server: every listener, the HTTP/2 and HTTP/1.1 stacks, and the gRPC services.
///
/// A `Service` for swift-service-lifecycle. On graceful shutdown it stops listening, reports
/// NOT_SERVING on the health service, sends every HTTP/2 connection a GOAWAY drain, lets RPCs in
/// flight finish, and returns once every connection has closed (each connection bounds its own
/// drain by `HTTP2Configuration.gracefulShutdownTimeout`). Cancelling `run()` closes everything.
public final class ExecStreamServer: Service, Sendable {
    private let configuration: ServerConfiguration
    private let logger: Logger
    private let onListening: @Sendable ([BoundListener]) -> Void
    private let onMetricsListening: @Sendable ([String]) -> Void
    private let registry = ChannelRegistry()
    /// The TLS contexts while the server runs with TLS, for `reloadCertificates`.
    private let tls = Mutex<ServerTLS?>(nil)
    /// The running server's supervisor, for `forceStop`.
    private let running = Mutex<ContainerSupervisor?>(nil)

    /// IOChannels alive now (exec and container stdio); back to its baseline when sessions end.
    public var liveChannelCount: Int { self.registry.channelCount }

    /// - Parameters:
    ///   - onListening: called once every listener is bound and accepting, and every container's
    ///     main process has started, with the listeners (a TCP port 0 replaced by the real port).
    ///   - onMetricsListening: called just before, with the URL of each `--metrics-listen` listener.
    public init(
        configuration: ServerConfiguration,
        logger: Logger,
        onMetricsListening: @escaping @Sendable ([String]) -> Void = { _ in },
        onListening: @escaping @Sendable ([BoundListener]) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.logger = logger
        self.onMetricsListening = onMetricsListening
        self.onListening = onListening
    }

    /// Reads the TLS certificate, key and CA files again; new connections use them, open ones
    /// keep what they have. Without TLS it does nothing. A failure keeps the previous files' and
    /// says why.
    public func reloadCertificates() throws(ServerError) {
        try self.tls.withLock { $0 }?.reload()
    }

    /// Everything the server checks before it binds anything: the configuration's values, the
    /// containers, the TLS files, the socket's group, the control-plane addresses. `execstream
    /// serve --check-config` runs exactly this, so a configuration it accepts starts (unless an
    /// address is in use).
    public func checkConfiguration() throws(ServerError) {
        _ = try self.startChecks()
    }

    /// The checks of `checkConfiguration`, and what they load.
    private func startChecks() throws(ServerError) -> (containers: ContainerStore, tls: ServerTLS?, socketGroup: (id: gid_t, name: String)?) {
        try self.configuration.validate()
        let containers = ContainerStore()
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000_000)
        for spec in self.configuration.containers {
            do {
                try spec.validate()
                try containers.add(spec, now: now)
            } catch {
                throw ServerError(code: .invalidConfiguration, message: error.message)
            }
        }
        for address in self.configuration.controlListenAddresses {
            guard case .tcp = address else {
                throw ServerError(
                    code: .invalidConfiguration,
                    message: "--control-listen takes TCP addresses (\(address) serves the control plane already as a --listen address)"
                )
            }
            guard self.configuration.tls != nil else {
                throw ServerError(
                    code: .invalidConfiguration,
                    message: "--control-listen \(address) needs TLS with client certificates (--tls-cert, --tls-key, --control-client-ca)"
                )
            }
        }
        for address in self.configuration.metricsListenAddresses {
            guard case .tcp = address else {
                throw ServerError(code: .invalidConfiguration, message: "--metrics-listen takes TCP addresses, not \(address)")
            }
        }
        let tls = try self.configuration.tls.map { files throws(ServerError) in
            try ServerTLS(files: files, needsControl: !self.configuration.controlListenAddresses.isEmpty)
        }
        let socketGroup = try self.configuration.unixSocketGroup.map { group throws(ServerError) in try ListenerBinder.resolve(group) }
        return (containers, tls, socketGroup)
    }

    /// A forced shutdown (a second SIGTERM or SIGINT during the drain): kills the process group
    /// of every exec now, whatever the session policy; cancelling `run()` then closes the rest.
    public func forceStop() {
        self.running.withLock { $0 }?.killExecs()
    }

    public func run() async throws {
        let (containers, tls, socketGroup) = try self.startChecks()
        let group = MultiThreadedEventLoopGroup.singleton
        let transport = GRPCHTTP2ServerTransport(configuration: self.configuration.grpc)
        let health = HealthService(services: [
            "grpc.health.v1.Health", "runtime.v1.RuntimeService", "runtime.v1.ImageService",
            "containerd.services.streaming.v1.Streaming", "execstream.v1.Containers",
        ])
        self.tls.withLock { $0 = tls }
        let advertised = AdvertisedStreamingAddress()
        let requests = StreamingRequestCache()
        let registry = self.registry
        let supervisor = ContainerSupervisor(
            store: containers,
            registry: registry,
            outputDrainBound: self.configuration.sessions.postExitDrain,
            timers: group.any(),
            logger: self.logger
        )
        let metrics = ServerMetrics()
        let audit = AuditLog(logger: self.logger)
        let slots = SessionSlots(limit: self.configuration.sessions.maxConcurrentSessions)
        self.running.withLock { $0 = supervisor }
        defer { self.running.withLock { $0 = nil } }
        let runtime = CRIRuntimeService(
            containers: containers,
            requests: requests,
            advertised: advertised,
            execSyncOutputLimit: self.configuration.execSyncOutputLimit,
            maxMessageBytes: self.configuration.grpc.maxMessageBytes,
            supervisor: supervisor,
            metrics: metrics,
            audit: audit
        )
        let containerdStreaming = ContainerdStreamingService(registry: registry, observer: SessionObservers([metrics, audit]), logger: self.logger)
        let containerAPI = ContainerService(store: containers, supervisor: supervisor, eventLoops: group, audit: audit)
        let grpcServer = GRPCServer(transport: transport, services: [health, runtime, CRIImageService(), containerdStreaming, containerAPI])
        let streaming = StreamingEndpoint(
            requests: requests,
            containers: containers,
            registry: registry,
            supervisor: supervisor,
            policy: self.configuration.sessions,
            sessions: slots,
            metrics: metrics,
            audit: audit,
            logger: self.logger
        )
        let enableBenchmarkRoutes = self.configuration.enableBenchmarkRoutes
        // Channels nobody attends are collected here; a process writing to a closed pipe gets EPIPE.
        let ticker = group.any().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in registry.tick() }
        defer { ticker.cancel() }
        signal(SIGPIPE, SIG_IGN)
        let connections = ConnectionSet()
        let binder = ListenerBinder(
            group: group,
            http2: self.configuration.http2,
            protocolDetectionTimeout: self.configuration.protocolDetectionTimeout,
            tls: tls,
            socketGroup: socketGroup,
            connections: connections,
            metrics: metrics,
            logger: self.logger,
            makeRouter: { peer in
                StreamRouter(grpc: transport, streaming: streaming, enableBenchmarkRoutes: enableBenchmarkRoutes, peer: peer)
            }
        )

        // Every listener is bound, then the containers start, then connections are accepted: a
        // port in use fails the start before any main process runs, and no call ever sees a
        // container that has not started yet.
        var listeners: [(channel: any Channel, listener: BoundListener)] = []
        var metricsListeners: [(channel: any Channel, url: String)] = []
        let metricsConnections = ConnectionSet()
        do {
            for address in self.configuration.listenAddresses {
                listeners.append(try await binder.bind(address, control: false))
            }
            for address in self.configuration.controlListenAddresses {
                guard case .tcp = address else {
                    throw ServerError(
                        code: .invalidConfiguration,
                        message: "--control-listen takes TCP addresses (\(address) serves the control plane already as a --listen address)"
                    )
                }
                listeners.append(try await binder.bind(address, control: true))
            }
            for address in self.configuration.metricsListenAddresses {
                let registry = self.registry
                metricsListeners.append(
                    try await MetricsListener.bind(address, group: group, connections: metricsConnections) {
                        metrics.exposition(tokensInFlight: requests.count, channels: registry)
                    }
                )
            }
            try await supervisor.startAll(on: group.any())
            for listener in listeners {
                try await ListenerBinder.startAccepting(listener.channel)
            }
        } catch {
            for listener in listeners {
                try? await listener.channel.close()
                Self.removeSocketFile(of: listener.listener)
            }
            for listener in metricsListeners {
                try? await listener.channel.close()
            }
            await supervisor.stopAll()
            switch error {
            case let error as ServerError:
                throw error
            case let error as ExecStreamError:
                throw ServerError(code: .invalidConfiguration, message: error.message)
            default:
                throw ServerError(code: .bindFailed, message: "\(error)")
            }
        }
        advertised.set(from: listeners.map(\.listener), override: self.configuration.advertiseHost)
        let listenerChannels = listeners.map(\.channel)
        for listener in listeners {
            self.logger.info("listening", metadata: ["address": "\(listener.listener)"])
        }
        for listener in metricsListeners {
            self.logger.info("listening", metadata: ["address": "\(listener.url) (metrics)"])
        }
        self.onMetricsListening(metricsListeners.map(\.url))
        self.onListening(listeners.map(\.listener))
        SystemdNotifier.ready(status: "serving on " + listeners.map { "\($0.listener)" }.joined(separator: ", "))

        var failure: (any Error)?
        do {
            try await withTaskCancellationHandler {
                try await withGracefulShutdownHandler {
                    try await grpcServer.serve()
                } onGracefulShutdown: {
                    self.logger.info("graceful shutdown: draining connections")
                    SystemdNotifier.stopping(status: "draining connections")
                    // Every few seconds, what the drain waits for (and for systemctl status).
                    let logger = self.logger
                    group.any().scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { task in
                        let open = slots.openCount
                        guard open > 0 || supervisor.runningExecCount > 0 else {
                            task.cancel()
                            return
                        }
                        let active = metrics.activeSessions
                        let (exec, attach, portForward) = (active[.exec] ?? 0, active[.attach] ?? 0, active[.portForward] ?? 0)
                        let text = "draining: \(open) sessions left (exec \(exec), attach \(attach), port-forward \(portForward))"
                        logger.info(
                            "draining",
                            metadata: [
                                "sessions": "\(open)", "exec": "\(exec)", "attach": "\(attach)", "portForward": "\(portForward)",
                                "containerdStreams": "\(active[.containerdStream] ?? 0)", "execProcesses": "\(supervisor.runningExecCount)",
                            ]
                        )
                        SystemdNotifier.status(text)
                    }
                    health.setAll(.notServing)
                    for channel in listenerChannels {
                        channel.close(promise: nil)
                    }
                    connections.quiesceAll()
                    supervisor.terminateAll()
                    // HTTP/2 connections bound their own drain; upgraded ones (WebSocket, SPDY,
                    // port-forward) have none: whatever is still open after the grace period is closed.
                    group.any().scheduleTask(in: self.configuration.http2.gracefulShutdownTimeout) {
                        connections.closeAll()
                    }
                    // The transport, not GRPCServer: a shutdown that arrives before serve() has
                    // started would make GRPCServer refuse to serve (serverIsStopped); a closed
                    // transport intake makes listen, and so serve, return once RPCs are done.
                    transport.beginGracefulShutdown()
                }
            } onCancel: {
                for channel in listenerChannels {
                    channel.close(promise: nil)
                }
                connections.closeAll()
            }
        } catch {
            failure = error
        }
        for listener in listeners {
            try? await listener.channel.close()
            Self.removeSocketFile(of: listener.listener)
        }
        await connections.waitUntilAllClosed()
        // Metrics are served through the drain; scrapers are let go last.
        for listener in metricsListeners {
            try? await listener.channel.close()
        }
        metricsConnections.closeAll()
        // Main processes live as long as the server: nothing is left behind.
        await supervisor.stopAll()
        if let failure {
            throw failure
        }
    }

    private static func removeSocketFile(of listener: BoundListener) {
        if case .unix(let path) = listener.address {
            unlink(path)
        }
    }
}

/// The accepted connections, so a shutdown can drain or close them all.
final class ConnectionSet: Sendable {
    private let channels = Mutex([ObjectIdentifier: any Channel]())

    func insert(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        self.channels.withLock { $0[key] = channel }
        channel.closeFuture.whenComplete { _ in
            _ = self.channels.withLock { $0.removeValue(forKey: key) }
        }
    }

    func quiesceAll() {
        for channel in self.channels.withLock({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    func closeAll() {
        for channel in self.channels.withLock({ Array($0.values) }) {
            channel.close(promise: nil)
        }
    }

    func waitUntilAllClosed() async {
        for channel in self.channels.withLock({ Array($0.values) }) {
            try? await channel.closeFuture.get()
        }
    }
}
