public import ExecStreamCore
public import ExecStreamHTTP2
public import NIOCore

/// Everything `ExecStreamServer` needs to run.
public struct ServerConfiguration: Sendable {
    /// Where to listen.
    public var listenAddresses: [ListenAddress]
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

    public init(
        listenAddresses: [ListenAddress],
        http2: HTTP2Configuration = HTTP2Configuration(),
        grpc: GRPCTransportConfiguration = GRPCTransportConfiguration(),
        protocolDetectionTimeout: TimeAmount = .seconds(30),
        enableBenchmarkRoutes: Bool = false,
        containers: [ContainerSpec] = [ServerConfiguration.demoContainer],
        advertiseHost: String? = nil,
        execSyncOutputLimit: Int = 16 << 20
    ) {
        self.listenAddresses = listenAddresses
        self.http2 = http2
        self.grpc = grpc
        self.protocolDetectionTimeout = protocolDetectionTimeout
        self.enableBenchmarkRoutes = enableBenchmarkRoutes
        self.containers = containers
        self.advertiseHost = advertiseHost
        self.execSyncOutputLimit = execSyncOutputLimit
    }

    /// The container every server declares, so exec and attach work at once: host isolation, and
    /// a main process `/bin/sh` reading its stdin.
    public static let demoContainer = ContainerSpec(
        id: "demo",
        labels: ["io.execstream.demo": "true"],
        mainProcess: MainProcessSpec(command: ["/bin/sh"], stdin: true)
    )

    /// The embedded default: 127.0.0.1:10350 and a unix socket.
    public static let defaultUnixSocketPath = "/run/execstream/execstream.sock"
    /// The embedded default TCP address.
    public static let defaultTCPAddress = ListenAddress.tcp(host: "127.0.0.1", port: 10350)
}
