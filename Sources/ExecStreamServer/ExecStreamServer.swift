public import ExecStreamCore
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
    private let onListening: @Sendable ([ListenAddress]) -> Void
    private let registry = ChannelRegistry()

    /// IOChannels alive now (exec and container stdio); back to its baseline when sessions end.
    public var liveChannelCount: Int { self.registry.channelCount }

    /// - Parameter onListening: called once every listener is bound, with the bound addresses
    ///   (a TCP port 0 replaced by the real port).
    public init(configuration: ServerConfiguration, logger: Logger, onListening: @escaping @Sendable ([ListenAddress]) -> Void = { _ in }) {
        self.configuration = configuration
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let transport = GRPCHTTP2ServerTransport(configuration: self.configuration.grpc)
        let health = HealthService(services: [
            "grpc.health.v1.Health", "runtime.v1.RuntimeService", "runtime.v1.ImageService",
            "containerd.services.streaming.v1.Streaming", "execstream.v1.Containers",
        ])
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
        do {
            try await supervisor.startAll(on: group.any())
        } catch {
            await supervisor.stopAll()
            throw ServerError(code: .invalidConfiguration, message: error.message)
        }
        let runtime = CRIRuntimeService(
            containers: containers,
            requests: requests,
            advertised: advertised,
            execSyncOutputLimit: self.configuration.execSyncOutputLimit,
            maxMessageBytes: self.configuration.grpc.maxMessageBytes,
            supervisor: supervisor
        )
        let containerdStreaming = ContainerdStreamingService(registry: registry, logger: self.logger)
        let containerAPI = ContainerService(store: containers, supervisor: supervisor, eventLoops: group)
        let grpcServer = GRPCServer(transport: transport, services: [health, runtime, CRIImageService(), containerdStreaming, containerAPI])
        let streaming = StreamingEndpoint(
            requests: requests,
            containers: containers,
            registry: registry,
            supervisor: supervisor,
            policy: self.configuration.sessions,
            sessions: SessionSlots(limit: self.configuration.sessions.maxConcurrentSessions),
            logger: self.logger
        )
        let router = StreamRouter(grpc: transport, streaming: streaming, enableBenchmarkRoutes: self.configuration.enableBenchmarkRoutes)
        // Channels nobody attends are collected here; a process writing to a closed pipe gets EPIPE.
        let ticker = group.any().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in registry.tick() }
        defer { ticker.cancel() }
        signal(SIGPIPE, SIG_IGN)
        let connections = ConnectionSet()

        var listeners: [(channel: any Channel, address: ListenAddress)] = []
        do {
            for address in self.configuration.listenAddresses {
                listeners.append(try await self.bind(address, group: group, router: router, connections: connections))
            }
        } catch {
            for listener in listeners {
                try? await listener.channel.close()
            }
            await supervisor.stopAll()
            throw error
        }
        advertised.set(from: listeners.map(\.address), override: self.configuration.advertiseHost)
        let listenerChannels = listeners.map(\.channel)
        for listener in listeners {
            self.logger.info("listening", metadata: ["address": "\(listener.address)"])
        }
        self.onListening(listeners.map(\.address))

        var failure: (any Error)?
        do {
            try await withTaskCancellationHandler {
                try await withGracefulShutdownHandler {
                    try await grpcServer.serve()
                } onGracefulShutdown: {
                    self.logger.info("graceful shutdown: draining connections")
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
            if case .unix(let path) = listener.address {
                unlink(path)
            }
        }
        await connections.waitUntilAllClosed()
        // Main processes live as long as the server: nothing is left behind.
        await supervisor.stopAll()
        if let failure {
            throw failure
        }
    }

    // MARK: Listeners

    private func bind(
        _ address: ListenAddress,
        group: MultiThreadedEventLoopGroup,
        router: StreamRouter,
        connections: ConnectionSet
    ) async throws -> (channel: any Channel, address: ListenAddress) {
        var configured = self.configuration.http2
        if case .unix = address {
            // Local and root-only (0600): accept the :authority older grpc-go clients send here.
            configured.validatesHTTPMessaging = false
        }
        let http2 = configured
        let detectionTimeout = self.configuration.protocolDetectionTimeout
        var bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    connections.insert(channel)
                    let sniffer = ProtocolSniffer(timeout: detectionTimeout) { detected, context in
                        switch detected {
                        case .http2:
                            try context.pipeline.syncOperations.addHandler(
                                HTTP2ServerConnectionHandler(configuration: http2) { router.route($0) }
                            )
                        case .http1:
                            try HTTP1Upgrades.configure(context.pipeline.syncOperations, channel: context.channel, router: router)
                        }
                    }
                    try channel.pipeline.syncOperations.addHandler(sniffer)
                }
            }
        do {
            switch address {
            case .tcp(let host, let port):
                bootstrap = bootstrap.childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                let channel = try await bootstrap.bind(host: host, port: port).get()
                return (channel, .tcp(host: host, port: channel.localAddress?.port ?? port))
            case .unix(let path):
                let channel = try await self.bindUnixSocket(path: path, bootstrap: bootstrap)
                return (channel, address)
            case .vsock(let port):
                let channel = try await bootstrap.bind(to: VsockAddress(cid: .any, port: .init(rawValue: port))).get()
                return (channel, address)
            }
        } catch let error as ServerError {
            throw error
        } catch {
            throw ServerError(code: .bindFailed, message: "cannot listen on \(address): \(error)")
        }
    }

    /// Binds a unix socket with mode 0600 and no window in which it has another mode: bind a
    /// temporary name, chmod it, rename it into place. A stale socket (nobody accepting) is
    /// replaced; a live one, or a file that is not a socket, is an error.
    private func bindUnixSocket(path: String, bootstrap: ServerBootstrap) async throws -> any Channel {
        let maximumLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1
        guard path.utf8.count <= maximumLength else {
            throw ServerError(code: .invalidConfiguration, message: "unix socket path \(path) is too long (\(path.utf8.count) bytes; at most \(maximumLength))")
        }
        var status = stat()
        if lstat(path, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFSOCK else {
                throw ServerError(code: .invalidConfiguration, message: "\(path) exists and is not a socket; refusing to replace it")
            }
            if Self.unixSocketAcceptsConnections(path) {
                throw ServerError(code: .addressInUse, message: "another server is listening on \(path)")
            }
        }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !directory.isEmpty {
            mkdir(directory, 0o755)
        }
        // A hidden random name no longer than the real one (where it can be), so any path that
        // fits also fits while it is being installed.
        let nameLength = max(path.utf8.count - directory.utf8.count - 2, 8)
        let randomName = (0..<nameLength).map { _ in "0123456789abcdef".randomElement()! }
        var temporary = "\(directory)/.\(String(randomName))"
        if temporary.utf8.count > maximumLength {
            temporary = path  // no room for a temporary name: bind in place, then chmod
        }
        let channel = try await bootstrap.bind(unixDomainSocketPath: temporary, cleanupExistingSocketFile: true).get()
        guard chmod(temporary, 0o600) == 0, temporary == path || rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? await channel.close()
            unlink(temporary)
            throw ServerError(code: .bindFailed, message: "cannot install unix socket \(path): \(reason)")
        }
        return channel
    }

    private static func unixSocketAcceptsConnections(_ path: String) -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
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
