import ArgumentParser
import ExecStreamCore
import ExecStreamHTTP2
import ExecStreamServer
import Logging
import NIOCore
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// `execstream serve`: run the server. With no flags it listens on 127.0.0.1:10350 and on
/// /run/execstream/execstream.sock. SIGTERM and SIGINT drain connections gracefully.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the ExecStream server (gRPC and streaming on every listener)."
    )

    @Option(name: .customLong("listen"), help: "HOST:PORT, [IPV6]:PORT or vsock://:PORT to listen on (repeatable; default 127.0.0.1:10350).")
    var listen: [String] = []

    @Option(name: .customLong("cri-socket"), help: "The unix socket to serve on (default \(ServerConfiguration.defaultUnixSocketPath)).")
    var criSocket: String = ServerConfiguration.defaultUnixSocketPath

    @Flag(name: .customLong("no-cri-socket"), help: "Serve on no unix socket.")
    var noCRISocket = false

    @Option(name: .customLong("keepalive-interval"), help: "Seconds without inbound frames before a keepalive PING.")
    var keepaliveInterval: Double = 60

    @Option(name: .customLong("keepalive-timeout"), help: "Seconds a keepalive PING may go unanswered.")
    var keepaliveTimeout: Double = 20

    @Option(name: .customLong("idle-timeout"), help: "Seconds a connection may stay without streams.")
    var idleTimeout: Double = 1800

    @Option(name: .customLong("shutdown-grace"), help: "Seconds a graceful shutdown waits for open streams.")
    var shutdownGrace: Double = 30

    @Option(name: .customLong("max-concurrent-streams"), help: "HTTP/2 streams per connection.")
    var maxConcurrentStreams: Int = 1000

    @Option(name: .customLong("max-header-list-size"), help: "Largest request header list, in bytes (larger: 431).")
    var maxHeaderListSize: Int = 64 << 10

    @Option(name: .customLong("grpc-max-message-size"), help: "Largest gRPC request message, in bytes.")
    var grpcMaxMessageSize: Int = 16 << 20

    @Option(name: .customLong("container"), help: "Declare a container with this id (host isolation; repeatable). 'demo' is always declared.")
    var containers: [String] = []

    @Option(name: .customLong("advertise-address"), help: "The host streaming URLs name (default: the first --listen host; a wildcard becomes loopback).")
    var advertiseAddress: String?

    @Option(name: .customLong("exec-sync-max-output"), help: "Bytes of stdout and of stderr ExecSync keeps; the rest is dropped with a notice.")
    var execSyncMaxOutput: Int = 16 << 20

    @Flag(name: .customLong("enable-benchmark-routes"), help: "Serve GET /debug/bytes?size=N for benchmarks. Never in production.")
    var enableBenchmarkRoutes = false

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func run() async throws {
        var addresses: [ListenAddress] = []
        for text in self.listen.isEmpty ? [ServerConfiguration.defaultTCPAddress.description] : self.listen {
            do {
                addresses.append(try ListenAddress(parsing: text))
            } catch {
                throw ValidationError(error.message)
            }
        }
        if !self.noCRISocket {
            addresses.append(.unix(path: self.criSocket))
        }
        var http2 = HTTP2Configuration()
        http2.keepaliveInterval = Self.timeAmount(self.keepaliveInterval)
        http2.keepaliveTimeout = Self.timeAmount(self.keepaliveTimeout)
        http2.idleTimeout = Self.timeAmount(self.idleTimeout)
        http2.gracefulShutdownTimeout = Self.timeAmount(self.shutdownGrace)
        http2.maxConcurrentStreams = self.maxConcurrentStreams
        http2.maxHeaderListSize = self.maxHeaderListSize
        let configuration = ServerConfiguration(
            listenAddresses: addresses,
            http2: http2,
            grpc: GRPCTransportConfiguration(maxReceiveMessageSize: self.grpcMaxMessageSize),
            enableBenchmarkRoutes: self.enableBenchmarkRoutes,
            containers: [ServerConfiguration.demoContainer] + self.containers.filter { $0 != "demo" }.map { ContainerSpec(id: $0) },
            advertiseHost: self.advertiseAddress,
            execSyncOutputLimit: self.execSyncMaxOutput
        )

        var logger = Logger(label: "execstream")
        logger.logLevel = Logger.Level(rawValue: self.logLevel) ?? .info
        let server = ExecStreamServer(configuration: configuration, logger: logger) { bound in
            // One line per listener on stdout: scripts and tests wait for these.
            for address in bound {
                switch address {
                case .tcp:
                    print("listening on http://\(address)")
                case .unix, .vsock:
                    print("listening on \(address)")
                }
            }
            fflush(nil)
        }
        let group = ServiceGroup(
            configuration: .init(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        do {
            try await group.run()
        } catch let error as ServerError {
            // One clear line and a non-zero exit, not a stack of wrapped errors.
            printToStandardError("execstream: \(error.message)")
            throw ExitCode.failure
        }
    }

    private static func timeAmount(_ seconds: Double) -> TimeAmount {
        .nanoseconds(Int64(seconds * 1_000_000_000))
    }
}

/// Writes one line to standard error (unbuffered, safe from any task).
func printToStandardError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}
