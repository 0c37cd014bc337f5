import ArgumentParser
import ExecStreamCore
import ExecStreamHTTP2
import ExecStreamServer
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// `execstream serve`: run the server. With no flags it serves the data plane (streaming URLs,
/// health) on 127.0.0.1:10350 and the control plane on /run/execstream/execstream.sock (0600).
/// SIGTERM and SIGINT drain connections gracefully; SIGHUP reloads the TLS files.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the ExecStream server.",
        discussion: """
            The control plane (CRI, the container API, containerd's Streaming) is served on the unix \
            socket, on vsock and on --control-listen addresses (mutual TLS) only; TCP --listen \
            addresses serve the one-time streaming URLs and health. SIGHUP reloads the TLS files.
            """
    )

    @Option(name: .customLong("config"), help: "A YAML configuration file (flags override it).")
    var config: String?

    @Option(
        name: .customLong("listen"),
        help: "HOST:PORT or [IPV6]:PORT for the data plane, or vsock://:PORT for both planes (repeatable; default 127.0.0.1:10350)."
    )
    var listen: [String] = []

    @Option(
        name: .customLong("control-listen"),
        help: "HOST:PORT serving the control plane over mutual TLS (repeatable; needs --tls-cert, --tls-key, --control-client-ca)."
    )
    var controlListen: [String] = []

    @Option(
        name: .customLong("metrics-listen"),
        help: "HOST:PORT serving /metrics and /healthz alone, in plain HTTP (repeatable; the data plane serves /metrics too)."
    )
    var metricsListen: [String] = []

    @Option(name: .customLong("cri-socket"), help: "The unix socket serving both planes (default \(ServerConfiguration.defaultUnixSocketPath)).")
    var criSocket: String?

    @Flag(name: .customLong("no-cri-socket"), help: "Serve on no unix socket.")
    var noCRISocket = false

    @Option(name: .customLong("socket-group"), help: "A group (name or id) whose members may use the unix socket: mode 0660 instead of 0600.")
    var socketGroup: String?

    @Option(name: .customLong("tls-cert"), help: "The server certificate chain (PEM): TLS on every TCP listener.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "The server private key (PEM).")
    var tlsKey: String?

    @Option(name: .customLong("tls-client-ca"), help: "Data-plane TCP listeners require client certificates signed by this CA (PEM).")
    var tlsClientCA: String?

    @Option(name: .customLong("control-client-ca"), help: "--control-listen addresses require client certificates signed by this CA (PEM).")
    var controlClientCA: String?

    @Option(name: .customLong("keepalive-interval"), help: "Seconds without inbound frames before a keepalive PING (default 60).")
    var keepaliveInterval: Double?

    @Option(name: .customLong("keepalive-timeout"), help: "Seconds a keepalive PING may go unanswered (default 20).")
    var keepaliveTimeout: Double?

    @Option(name: .customLong("idle-timeout"), help: "Seconds a connection may stay without streams (default 1800).")
    var idleTimeout: Double?

    @Option(name: .customLong("shutdown-grace"), help: "Seconds a graceful shutdown waits for open streams (default 30).")
    var shutdownGrace: Double?

    @Option(name: .customLong("max-concurrent-streams"), help: "HTTP/2 streams per connection (default 1000).")
    var maxConcurrentStreams: Int?

    @Option(name: .customLong("max-header-list-size"), help: "Largest request header list, in bytes; larger gets 431 (default 65536).")
    var maxHeaderListSize: Int?

    @Option(name: .customLong("grpc-max-message-size"), help: "Largest gRPC request message, in bytes (default 16 MiB).")
    var grpcMaxMessageSize: Int?

    @Option(name: .customLong("container"), help: "Declare a container with this id (host isolation, no main process; repeatable). 'demo' is always declared.")
    var containers: [String] = []

    @Option(name: .customLong("advertise-address"), help: "The host streaming URLs name (default: the first --listen host; a wildcard becomes loopback).")
    var advertiseAddress: String?

    @Option(name: .customLong("exec-sync-max-output"), help: "Bytes of stdout and of stderr ExecSync keeps; the rest is dropped with a notice (default 16 MiB).")
    var execSyncMaxOutput: Int?

    @Option(name: .customLong("post-exit-drain"), help: "Seconds an exec's output may stay open after it exited, held by a background child (default 2).")
    var postExitDrain: Double?

    @Option(name: .customLong("max-sessions"), help: "Exec and attach sessions open at once; more get 429 (default 1000).")
    var maxSessions: Int?

    @Flag(
        name: .customLong("keep-process-on-disconnect"),
        help: "Leave an exec running when its client vanishes (default: kill its process group)."
    )
    var keepProcessOnDisconnect = false

    @Flag(
        name: .customLong("enable-benchmark-routes"),
        help: "Serve GET /debug/bytes?size=N, /debug/registry and /debug/settled for benchmarks and leak tests. Never in production."
    )
    var enableBenchmarkRoutes = false

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "text, or json: one object per line (default text).")
    var logFormat: String?

    @Flag(
        name: .customLong("check-config"),
        help: "Check the configuration (the file and these flags: values, containers, TLS files, socket group) and exit: 0 if the server would start with it."
    )
    var checkConfig = false

    func run() async throws {
        let configuration: ServerConfiguration
        let logger: Logger
        do {
            let file = try self.config.map { path throws(ServerError) in try ConfigurationFile.load(path) }
            configuration = try self.serverConfiguration(file: file)
            logger = try self.logger(file: file)
        } catch {
            printToStandardError("execstream: \(error.message)")
            throw ExitCode.failure
        }
        if self.checkConfig {
            do {
                try ExecStreamServer(configuration: configuration, logger: logger).checkConfiguration()
            } catch {
                printToStandardError("execstream: \(error.message)")
                throw ExitCode.failure
            }
            print("configuration ok")
            return
        }
        let server = ExecStreamServer(configuration: configuration, logger: logger, onMetricsListening: { urls in
            for url in urls {
                print("listening on \(url) (metrics)")
            }
        }) { bound in
            // One line per listener on stdout: scripts and tests wait for these.
            for listener in bound {
                print("listening on \(listener)")
            }
            fflush(nil)
        }
        var services = [ServiceGroupConfiguration.ServiceConfiguration(service: server)]
        if configuration.tls != nil {
            services.append(.init(service: CertificateReloader(server: server, logger: logger), successTerminationBehavior: .ignore))
        }
        var groupConfiguration = ServiceGroupConfiguration(services: services, logger: logger)
        groupConfiguration.gracefulShutdownSignals = [.sigterm, .sigint]
        let group = ServiceGroup(configuration: groupConfiguration)
        // The first SIGTERM or SIGINT drains (the service group's graceful shutdown); a second
        // one ends at once: every exec's process group is killed, then everything is cancelled.
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        do {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                tasks.addTask {
                    var count = 0
                    for await signal in signals {
                        count += 1
                        guard count == 2 else { continue }
                        logger.notice("second \(signal): ending now, killing every exec")
                        server.forceStop()
                        return
                    }
                }
                try await tasks.next()
                tasks.cancelAll()
                while !tasks.isEmpty {
                    _ = try? await tasks.next()
                }
            }
        } catch let error as ServerError {
            // One clear line and a non-zero exit, not a stack of wrapped errors.
            printToStandardError("execstream: \(error.message)")
            throw ExitCode.failure
        }
    }

    /// The server's logger: the level and format of the flags, else of the config file, else info
    /// and text. An unknown level or format is an error, never silently the default.
    private func logger(file: ConfigurationFile?) throws(ServerError) -> Logger {
        let level = try Logger.Level(parsingLogLevel: self.logLevel ?? file?.logLevel ?? "info")
        let formatText = self.logFormat ?? file?.logFormat ?? "text"
        guard let format = LogFormat(parsing: formatText) else {
            throw ServerError(code: .invalidConfiguration, message: "unknown log format \"\(formatText)\" (json or text)")
        }
        return Logger(label: "execstream") { label in ServerLogHandler(label: label, format: format, level: level) }
    }

    /// The defaults, then the config file, then the flags.
    private func serverConfiguration(file: ConfigurationFile?) throws(ServerError) -> ServerConfiguration {
        var configuration = ServerConfiguration(listenAddresses: [])
        do {
            try file?.apply(to: &configuration)
        } catch {
            throw ServerError(code: .invalidConfiguration, message: "\(self.config ?? ""): \(error.message)")
        }
        let fromFile = try file?.listenAddresses()

        var addresses: [ListenAddress] = []
        if self.listen.isEmpty {
            addresses = fromFile?.tcp ?? [ServerConfiguration.defaultTCPAddress]
        } else {
            for text in self.listen {
                do {
                    addresses.append(try ListenAddress(parsing: text))
                } catch {
                    throw ServerError(code: .invalidConfiguration, message: "--listen: \(error.message)")
                }
            }
        }
        if !self.noCRISocket, let socket = self.criSocket ?? (fromFile?.unixSocket ?? ServerConfiguration.defaultUnixSocketPath) {
            addresses.append(.unix(path: socket))
        }
        configuration.listenAddresses = addresses
        if !self.controlListen.isEmpty {
            configuration.controlListenAddresses = []
            for text in self.controlListen {
                do {
                    configuration.controlListenAddresses.append(try ListenAddress(parsing: text))
                } catch {
                    throw ServerError(code: .invalidConfiguration, message: "--control-listen: \(error.message)")
                }
            }
        }
        if !self.metricsListen.isEmpty {
            configuration.metricsListenAddresses = []
            for text in self.metricsListen {
                do {
                    configuration.metricsListenAddresses.append(try ListenAddress(parsing: text))
                } catch {
                    throw ServerError(code: .invalidConfiguration, message: "--metrics-listen: \(error.message)")
                }
            }
        }
        if let group = self.socketGroup { configuration.unixSocketGroup = UnixSocketGroup(parsing: group) }
        if self.tlsCert != nil || self.tlsKey != nil {
            guard let certificate = self.tlsCert ?? configuration.tls?.certificateChainFile, let key = self.tlsKey ?? configuration.tls?.privateKeyFile else {
                throw ServerError(code: .invalidConfiguration, message: "TLS needs both --tls-cert and --tls-key")
            }
            configuration.tls = TLSFiles(
                certificateChainFile: certificate,
                privateKeyFile: key,
                clientCAFile: configuration.tls?.clientCAFile,
                controlClientCAFile: configuration.tls?.controlClientCAFile
            )
        }
        for (flag, value) in [("--tls-client-ca", self.tlsClientCA), ("--control-client-ca", self.controlClientCA)] where value != nil {
            guard configuration.tls != nil else {
                throw ServerError(code: .invalidConfiguration, message: "\(flag) needs TLS: --tls-cert and --tls-key")
            }
            if flag == "--tls-client-ca" {
                configuration.tls?.clientCAFile = value
            } else {
                configuration.tls?.controlClientCAFile = value
            }
        }

        if let seconds = self.keepaliveInterval { configuration.http2.keepaliveInterval = try ServerConfiguration.duration(seconds: seconds, named: "--keepalive-interval") }
        if let seconds = self.keepaliveTimeout { configuration.http2.keepaliveTimeout = try ServerConfiguration.duration(seconds: seconds, named: "--keepalive-timeout") }
        if let seconds = self.idleTimeout { configuration.http2.idleTimeout = try ServerConfiguration.duration(seconds: seconds, named: "--idle-timeout") }
        if let seconds = self.shutdownGrace { configuration.http2.gracefulShutdownTimeout = try ServerConfiguration.duration(seconds: seconds, named: "--shutdown-grace") }
        if let streams = self.maxConcurrentStreams { configuration.http2.maxConcurrentStreams = streams }
        if let size = self.maxHeaderListSize { configuration.http2.maxHeaderListSize = size }
        if let size = self.grpcMaxMessageSize { configuration.grpc.maxMessageBytes = size }
        if let bytes = self.execSyncMaxOutput {
            guard bytes > 0 else { throw ServerError(code: .invalidConfiguration, message: "--exec-sync-max-output must be positive") }
            configuration.execSyncOutputLimit = bytes
        }
        if let seconds = self.postExitDrain { configuration.sessions.postExitDrain = try ServerConfiguration.duration(seconds: seconds, named: "--post-exit-drain") }
        if self.keepProcessOnDisconnect { configuration.sessions.killProcessGroupWhenClientVanishes = false }
        if let limit = self.maxSessions {
            guard limit > 0 else { throw ServerError(code: .invalidConfiguration, message: "--max-sessions must be positive") }
            configuration.sessions.maxConcurrentSessions = limit
        }
        if let host = self.advertiseAddress { configuration.advertiseHost = host }
        configuration.enableBenchmarkRoutes = self.enableBenchmarkRoutes
        for id in self.containers where !configuration.containers.contains(where: { $0.id == id }) {
            configuration.containers.append(ContainerSpec(id: id))
        }
        return configuration
    }

}

/// Writes one line to standard error (unbuffered, safe from any task).
func printToStandardError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// Reloads the server's TLS files on every SIGHUP until the server shuts down; a failed reload
/// is logged and the previous files stay in use.
struct CertificateReloader: Service, CustomStringConvertible {
    var description: String { "CertificateReloader" }

    let server: ExecStreamServer
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            do {
                try self.server.reloadCertificates()
                self.logger.info("SIGHUP: TLS certificates reloaded; new connections use them")
            } catch {
                self.logger.error("SIGHUP: TLS certificates not reloaded; the previous ones stay in use", metadata: ["error": "\(error.message)"])
            }
        }
    }
}
