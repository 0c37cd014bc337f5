public import ExecStreamCore
public import ExecStreamHTTP2
public import NIOCore

/// Everything `ExecStreamServer` needs to run.
public struct ServerConfiguration: Sendable {
    /// Where to listen. A TCP address serves the data plane only (streaming URLs, health); a unix
    /// socket and vsock serve the control plane too (see `ListenerAccess`).
    public var listenAddresses: [ListenAddress]
    /// TCP addresses that serve the control plane: TLS with client certificates verified against
    /// `tls.controlClientCAFile` (required with them).
    public var controlListenAddresses: [ListenAddress]
    /// TCP addresses that serve `/metrics` and `/healthz` alone, in plain HTTP/1.1 (see
    /// `MetricsListener`); the data plane serves `/metrics` too.
    public var metricsListenAddresses: [ListenAddress] = []
    /// The group of the unix socket: set, the socket is 0660 and this group's members may call
    /// it; nil, it is 0600 (its owner only).
    public var unixSocketGroup: UnixSocketGroup?
    /// TLS on every TCP listener; nil for plain TCP (data plane only, then).
    public var tls: TLSFiles?
    /// HTTP/2 settings and limits.
    public var http2: HTTP2Configuration
    /// gRPC limits.
    public var grpc: GRPCTransportConfiguration
    /// How long a connection may take to send its first bytes.
    public var protocolDetectionTimeout: TimeAmount
    /// Serve `GET /debug/bytes?size=N` (N bytes from memory) for benchmarks. Off in production.
    public var enableBenchmarkRoutes: Bool
    /// Containers declared at start.
    public var containers: [ContainerSpec]
    /// The host streaming URLs name; nil: the first TCP listener's (a wildcard becomes loopback).
    public var advertiseHost: String?
    /// ExecSync keeps at most this many bytes of stdout and of stderr.
    public var execSyncOutputLimit: Int
    /// How exec and attach sessions end.
    public var sessions: SessionPolicy

    public init(
        listenAddresses: [ListenAddress],
        http2: HTTP2Configuration = HTTP2Configuration(),
        grpc: GRPCTransportConfiguration = GRPCTransportConfiguration(),
        protocolDetectionTimeout: TimeAmount = .seconds(30),
        enableBenchmarkRoutes: Bool = false,
        containers: [ContainerSpec] = [ServerConfiguration.demoContainer],
        advertiseHost: String? = nil,
        execSyncOutputLimit: Int = 16 << 20,
        sessions: SessionPolicy = SessionPolicy(),
        controlListenAddresses: [ListenAddress] = [],
        unixSocketGroup: UnixSocketGroup? = nil,
        tls: TLSFiles? = nil
    ) {
        self.listenAddresses = listenAddresses
        self.controlListenAddresses = controlListenAddresses
        self.unixSocketGroup = unixSocketGroup
        self.tls = tls
        self.http2 = http2
        self.grpc = grpc
        self.protocolDetectionTimeout = protocolDetectionTimeout
        self.enableBenchmarkRoutes = enableBenchmarkRoutes
        self.containers = containers
        self.advertiseHost = advertiseHost
        self.execSyncOutputLimit = execSyncOutputLimit
        self.sessions = sessions
    }

    /// The container every server declares, so exec and attach work at once: host isolation, and
    /// a main process `/bin/sh` reading its stdin.
    public static let demoContainer = ContainerSpec(
        id: "demo",
        labels: ["io.execstream.demo": "true"],
        mainProcess: MainProcessSpec(command: ["/bin/sh"], stdin: true)
    )

    /// The embedded default: the data plane on 127.0.0.1:10350, the control plane on a unix socket.
    public static let defaultUnixSocketPath = "/run/execstream/execstream.sock"
    /// The embedded default TCP address.
    public static let defaultTCPAddress = ListenAddress.tcp(host: "127.0.0.1", port: 10350)

    /// The longest duration a setting may name: ten years (a "never" that still fits in
    /// nanoseconds, and far from anything that overflows).
    public static let longestDuration: Double = 10 * 365 * 24 * 3600

    /// A duration setting given in seconds (`name` is the flag or key, for the error): finite,
    /// 0 or more, and at most `longestDuration`.
    public static func duration(seconds: Double, named name: String) throws(ServerError) -> TimeAmount {
        guard seconds.isFinite, seconds >= 0, seconds <= Self.longestDuration else {
            throw ServerError(code: .invalidConfiguration, message: "\(name) must be 0 or more seconds, and at most \(Int(Self.longestDuration))")
        }
        return .nanoseconds(Int64(seconds * 1_000_000_000))
    }

    /// Checks the limits that flags and the config file set alike, before anything starts: each
    /// must be one the HTTP/2 and gRPC layers can carry (HTTP/2 settings are 32-bit).
    public func validate() throws(ServerError) {
        func require(_ value: Int, in range: ClosedRange<Int>, _ name: String) throws(ServerError) {
            guard range.contains(value) else {
                throw ServerError(code: .invalidConfiguration, message: "\(name) must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
            }
        }
        try require(self.http2.maxConcurrentStreams, in: 1...Int(UInt32.max), "the HTTP/2 maximum of concurrent streams")
        try require(self.http2.maxHeaderListSize, in: 1024...Int(UInt32.max), "the HTTP/2 maximum header list size")
        try require(self.grpc.maxMessageBytes, in: 1024...Int(Int32.max), "the gRPC maximum message size")
        try require(self.sessions.maxConcurrentSessions, in: 1...Int(Int32.max), "the maximum of concurrent sessions")
        try require(self.execSyncOutputLimit, in: 1...Int(Int32.max), "the ExecSync output limit")
    }
}

/// How exec and attach sessions end.
public struct SessionPolicy: Hashable, Sendable {
    /// How long an exec's output may stay open after the process exited (a background child
    /// holding it) before the client gets the status anyway.
    public var postExitDrain: TimeAmount
    /// Whether a vanished client kills its exec's process group. Attach never kills.
    public var killProcessGroupWhenClientVanishes: Bool
    /// Exec and attach sessions open at once; one more is answered 429 with `Retry-After`, its
    /// token left unspent so the client can retry.
    public var maxConcurrentSessions: Int
    /// How long a SPDY client may take to create every stream the session needs (the kubelet
    /// library's StreamCreationTimeout).
    public var streamCreationTimeout: TimeAmount
    /// How long a WebSocket or SPDY connection may go without a frame read or written (pings
    /// included) before it is closed: containerd's `stream_idle_timeout`.
    public var streamIdleTimeout: TimeAmount

    /// 2 seconds of drain; a vanished client's exec is killed; 1,000 sessions at once; 30 s to
    /// create streams; 4 hours of idleness.
    public init(
        postExitDrain: TimeAmount = .seconds(2),
        killProcessGroupWhenClientVanishes: Bool = true,
        maxConcurrentSessions: Int = 1000,
        streamCreationTimeout: TimeAmount = .seconds(30),
        streamIdleTimeout: TimeAmount = .hours(4)
    ) {
        self.streamIdleTimeout = streamIdleTimeout
        self.postExitDrain = postExitDrain
        self.killProcessGroupWhenClientVanishes = killProcessGroupWhenClientVanishes
        self.maxConcurrentSessions = maxConcurrentSessions
        self.streamCreationTimeout = streamCreationTimeout
    }
}

/// The files of the server's TLS identity and of the CAs its clients' certificates are checked
/// against. Read at start and again on SIGHUP.
public struct TLSFiles: Hashable, Sendable {
    /// The server's certificate chain (PEM), leaf first.
    public var certificateChainFile: String
    /// The server's private key (PEM).
    public var privateKeyFile: String
    /// With it, data-plane TCP listeners require a client certificate signed by this CA (PEM).
    public var clientCAFile: String?
    /// Control-plane TCP listeners require a client certificate signed by this CA (PEM).
    public var controlClientCAFile: String?

    public init(certificateChainFile: String, privateKeyFile: String, clientCAFile: String? = nil, controlClientCAFile: String? = nil) {
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
        self.clientCAFile = clientCAFile
        self.controlClientCAFile = controlClientCAFile
    }
}

/// The group a unix socket is shared with: a name looked up at start, or a numeric id.
public enum UnixSocketGroup: Hashable, Sendable, CustomStringConvertible {
    /// A group name, as in /etc/group.
    case name(String)
    /// A numeric group id.
    case id(UInt32)

    /// A number is an id; anything else a name.
    public init(parsing text: String) {
        self = UInt32(text).map(Self.id) ?? .name(text)
    }

    public var description: String {
        switch self {
        case .name(let name): return name
        case .id(let id): return String(id)
        }
    }
}
