import CExecSys
import ExecStreamCore
import ExecStreamHTTP1
import ExecStreamHTTP2
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Binds the listeners and sets up each accepted connection:
///
/// ```
/// accept ─▶ peer credentials (unix: SO_PEERCRED) ─▶ [TLS: NIOSSLServerHandler, ALPN h2 + http/1.1]
///        ─▶ ProtocolSniffer ─▶ identity (+ the client certificate's subject) ─▶ ConnectionPeer
///        ─▶ HTTP/2 (nghttp2) or HTTP/1.1 (upgrades), routed by a StreamRouter that knows the peer
/// ```
///
/// Listeners are bound with accepting paused (`autoRead` off): nothing is served until
/// `startAccepting` is called, once every listener is bound and the containers have started.
struct ListenerBinder: Sendable {
    let group: MultiThreadedEventLoopGroup
    let http2: HTTP2Configuration
    let protocolDetectionTimeout: TimeAmount
    let tls: ServerTLS?
    let socketGroup: (id: gid_t, name: String)?
    let connections: ConnectionSet
    /// Counts HTTP/2 connections (their GOAWAYs and resets) and TLS handshakes.
    let metrics: ServerMetrics
    let logger: Logger
    let makeRouter: @Sendable (ConnectionPeer) -> StreamRouter

    /// Binds `address`; `control` for a `--control-listen` TCP address (mutual TLS).
    func bind(_ address: ListenAddress, control: Bool) async throws -> (channel: any Channel, listener: BoundListener) {
        // Set once the listener is bound, before anything is accepted (accepting starts paused).
        let access = Mutex<ListenerAccess?>(nil)
        var bootstrap = ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                guard let listener = access.withLock({ $0 }) else {
                    return channel.eventLoop.makeFailedFuture(ServerError(code: .bindFailed, message: "a connection before its listener was ready"))
                }
                return self.setUp(channel, listener: listener)
            }
        do {
            switch address {
            case .tcp(let host, let port):
                bootstrap = bootstrap.childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                let channel = try await bootstrap.bind(host: host, port: port).get()
                let bound = ListenAddress.tcp(host: host, port: channel.localAddress?.port ?? port)
                let kind: ListenerAccess.Kind
                if control {
                    guard self.tls != nil else {
                        try? await channel.close()
                        throw ServerError(
                            code: .invalidConfiguration,
                            message: "--control-listen \(address) needs TLS with client certificates (--tls-cert, --tls-key, --control-client-ca)"
                        )
                    }
                    kind = .controlTCP(address: "\(bound)")
                } else {
                    let security: ListenerAccess.TCPSecurity = self.tls == nil ? .plain : (self.tlsRequiresClientCertificates ? .mutualTLS : .tls)
                    kind = .dataTCP(address: "\(bound)", security: security)
                }
                let listener = BoundListener(address: bound, access: ListenerAccess(kind))
                access.withLock { $0 = listener.access }
                if case .dataTCP(_, .plain) = kind, !Self.isLoopback(host) {
                    self.logger.warning(
                        "plain TCP listener on a non-loopback address: streaming URLs and their traffic can be read on the network",
                        metadata: ["address": "\(bound)", "remedy": "--tls-cert and --tls-key (and --tls-client-ca for mutual TLS)"]
                    )
                }
                return (channel, listener)
            case .unix(let path):
                let (channel, permissions) = try await self.bindUnixSocket(path: path, bootstrap: bootstrap)
                let listener = BoundListener(address: address, access: ListenerAccess(.unixSocket(path: path)), socketPermissions: permissions)
                access.withLock { $0 = listener.access }
                return (channel, listener)
            case .vsock(let port):
                let channel = try await bootstrap.bind(to: VsockAddress(cid: .any, port: .init(rawValue: port))).get()
                let listener = BoundListener(address: address, access: ListenerAccess(.vsock(port: port)))
                access.withLock { $0 = listener.access }
                return (channel, listener)
            }
        } catch let error as ServerError {
            throw error
        } catch {
            throw ServerError(code: .bindFailed, message: "cannot listen on \(address): \(error)")
        }
    }

    /// Starts accepting on a listener `bind` returned.
    static func startAccepting(_ channel: any Channel) async throws {
        try await channel.setOption(.autoRead, value: true).get()
    }

    private var tlsRequiresClientCertificates: Bool {
        self.tls?.requiresClientCertificates(control: false) ?? false
    }

    // MARK: One connection

    private func setUp(_ channel: any Channel, listener: ListenerAccess) -> EventLoopFuture<Void> {
        self.connections.insert(channel)
        return Self.transportIdentity(of: channel, listener: listener).flatMapThrowing { identity in
            let sync = channel.pipeline.syncOperations
            var control = false
            switch listener.kind {
            case .controlTCP:
                control = true
                fallthrough
            case .dataTCP:
                if let tls = self.tls {
                    try sync.addHandler(NIOSSLServerHandler(context: tls.context(control: control)))
                    try sync.addHandler(TLSHandshakeObserver(metrics: self.metrics, control: control))
                }
            case .unixSocket, .vsock:
                break
            }
            var http2 = self.http2
            if case .unixSocket = listener.kind {
                // Local and private (0600, or 0660 for its group): accept the :authority older
                // grpc-go clients send here.
                http2.validatesHTTPMessaging = false
            }
            let configuration = http2
            let sniffer = ProtocolSniffer(timeout: self.protocolDetectionTimeout) { detected, context in
                let peer = try Self.peer(listener: listener, transportIdentity: identity, pipeline: context.pipeline)
                let router = self.makeRouter(peer)
                switch detected {
                case .http2:
                    try context.pipeline.syncOperations.addHandler(
                        HTTP2ServerConnectionHandler(configuration: configuration, observer: self.metrics) { router.route($0) }
                    )
                case .http1:
                    try HTTP1Upgrades.configure(context.pipeline.syncOperations, channel: context.channel, router: router)
                }
            }
            try sync.addHandler(sniffer)
        }
    }

    /// Who the transport says the peer is, before TLS: the unix socket's peer credentials, or a
    /// network peer known only by its address.
    private static func transportIdentity(of channel: any Channel, listener: ListenerAccess) -> EventLoopFuture<PeerIdentity> {
        switch listener.kind {
        case .unixSocket:
            guard let provider = channel as? any SocketOptionProvider else {
                return channel.eventLoop.makeFailedFuture(ServerError(code: .bindFailed, message: "no peer credentials on a unix socket"))
            }
            let credentials: EventLoopFuture<execstream_peer_credentials> = provider.unsafeGetSocketOption(
                level: .init(SOL_SOCKET),
                name: .init(execstream_so_peercred)
            )
            return credentials.map { .unixPeer(uid: $0.uid, gid: $0.gid, pid: $0.pid) }
        case .vsock:
            return channel.eventLoop.makeSucceededFuture(.vsockPeer(contextID: nil))
        case .dataTCP, .controlTCP:
            return channel.eventLoop.makeSucceededFuture(.tokenHolder(address: GRPCHTTP2ServerTransport.peerDescription(channel.remoteAddress)))
        }
    }

    /// The connection's peer once its protocol is known (a TLS handshake is complete by then):
    /// a verified client certificate names the peer. A control listener without one is refused.
    private static func peer(listener: ListenerAccess, transportIdentity: PeerIdentity, pipeline: ChannelPipeline) throws -> ConnectionPeer {
        var identity = transportIdentity
        if case .tokenHolder(let address) = transportIdentity,
            let certificate = try? pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate
        {
            identity = .certificate(subject: certificate.subjectDescription, address: address)
        }
        if case .controlTCP = listener.kind, case .tokenHolder = identity {
            throw ServerError(code: .bindFailed, message: "a control-plane connection without a verified client certificate")
        }
        return ConnectionPeer(access: listener, identity: identity)
    }

    private static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    // MARK: Unix sockets

    /// Binds a unix socket with mode 0600 (0660 and the configured group) and no window in which
    /// it has another mode: bind a temporary name, set its group and mode, rename it into place.
    /// Missing parent directories are created (0755). A stale socket (nobody accepting) is
    /// replaced; a live one, or a file that is not a socket, is an error.
    private func bindUnixSocket(path: String, bootstrap: ServerBootstrap) async throws -> (any Channel, String) {
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
            try Self.makeDirectories(directory)
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
        let mode: mode_t = self.socketGroup == nil ? 0o600 : 0o660
        let installed =
            (self.socketGroup.map { chown(temporary, uid_t.max, $0.id) == 0 } ?? true)
            && chmod(temporary, mode) == 0
            && (temporary == path || rename(temporary, path) == 0)
        guard installed else {
            let reason = String(cString: strerror(errno))
            try? await channel.close()
            unlink(temporary)
            throw ServerError(code: .bindFailed, message: "cannot install unix socket \(path): \(reason)")
        }
        let permissions = self.socketGroup.map { "0660, group \($0.name)" } ?? "0600"
        return (channel, permissions)
    }

    /// `mkdir -p` with mode 0755 for the directories it creates.
    private static func makeDirectories(_ directory: String) throws(ServerError) {
        var prefix = ""
        for component in directory.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw ServerError(code: .bindFailed, message: "cannot create the directory \(prefix): \(String(cString: strerror(errno)))")
            }
        }
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

    /// Looks a socket group up by name or id; an unknown name is an error.
    static func resolve(_ group: UnixSocketGroup) throws(ServerError) -> (id: gid_t, name: String) {
        switch group {
        case .id(let id):
            return (id, String(id))
        case .name(let name):
            var entry = group_struct()
            var result: UnsafeMutablePointer<group_struct>?
            var buffer = [CChar](repeating: 0, count: 16 << 10)
            let status = getgrnam_r(name, &entry, &buffer, buffer.count, &result)
            guard status == 0, result != nil else {
                throw ServerError(code: .invalidConfiguration, message: "unknown socket group \"\(name)\"")
            }
            return (entry.gr_gid, name)
        }
    }
}

private typealias group_struct = Glibc.group
