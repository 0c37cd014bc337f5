public import ExecStreamCore
import Foundation
import Logging
import NIOCore
import Yams

/// The `--config` file: YAML, every field optional, unknown keys refused (a typo must not be
/// silently ignored). Command-line flags override what it sets; it overrides the defaults.
///
/// ```yaml
/// listen: ["127.0.0.1:10350", "[::1]:10350"]      # data plane: streaming URLs and health
/// controlListen: ["10.0.0.5:10351"]             # control plane over mutual TLS
/// metricsListen: ["127.0.0.1:9090"]              # /metrics and /healthz alone
/// criSocket: /run/execstream/execstream.sock   # both planes; "" for none
/// socketGroup: execstream                      # the socket is 0660 for this group (else 0600)
/// tls: {certFile: /etc/execstream/tls.crt, keyFile: /etc/execstream/tls.key,
///       clientCAFile: /etc/execstream/clients.crt, controlClientCAFile: /etc/execstream/admins.crt}
/// advertiseAddress: 10.0.0.5
/// execSyncMaxOutputBytes: 16777216
/// sessions: {postExitDrainSeconds: 2, killProcessGroupOnDisconnect: true, maxConcurrentSessions: 1000,
///            streamCreationTimeoutSeconds: 30, streamIdleTimeoutSeconds: 14400}
/// http2: {keepaliveIntervalSeconds: 60, keepaliveTimeoutSeconds: 20, idleTimeoutSeconds: 1800,
///         shutdownGraceSeconds: 30, maxConcurrentStreams: 1000, maxHeaderListSize: 65536}
/// grpc: {maxMessageBytes: 16777216}
/// logLevel: info                               # trace, debug, info, notice, warning, error, critical
/// logFormat: text                              # or json: one object per line
/// containers:
///   - id: web
///     name: web
///     labels: {app: web}
///     isolation: namespaces          # or host
///     env: ["PATH=/usr/bin:/bin"]
///     workingDir: /
///     user: 1000
///     group: 1000
///     image: registry.example/web:1  # what CRI reports (default execstream/<isolation>)
///     main: {command: ["/bin/sh"], tty: false, stdin: true, stdinOnce: false}
/// ```
public struct ConfigurationFile: Decodable, Hashable, Sendable {
    /// TCP addresses of the data plane (and vsock addresses, which serve both planes).
    public var listen: [String]?
    /// TCP addresses of the control plane (mutual TLS).
    public var controlListen: [String]?
    /// Addresses for `/metrics` and `/healthz` alone.
    public var metricsListen: [String]?
    /// The unix socket; "" for none.
    public var criSocket: String?
    /// The unix socket's group (a name or an id): mode 0660 instead of 0600.
    public var socketGroup: String?
    /// TLS on every TCP listener.
    public var tls: TLS?
    /// The host streaming URLs name.
    public var advertiseAddress: String?
    /// ExecSync's per-stream output limit.
    public var execSyncMaxOutputBytes: Int?
    /// Session policy.
    public var sessions: Sessions?
    /// HTTP/2 limits and timers.
    public var http2: HTTP2?
    /// gRPC limits.
    public var grpc: GRPC?
    /// Declared containers (`demo` is declared too, unless this list has its own `demo`).
    public var containers: [Container]?
    /// trace, debug, info, notice, warning, error or critical (`--log-level` overrides it).
    public var logLevel: String?
    /// `json` or `text` (`--log-format` overrides it).
    public var logFormat: String?

    /// `sessions:`
    public struct Sessions: Decodable, Hashable, Sendable {
        public var postExitDrainSeconds: Double?
        public var killProcessGroupOnDisconnect: Bool?
        public var maxConcurrentSessions: Int?
        public var streamCreationTimeoutSeconds: Double?
        public var streamIdleTimeoutSeconds: Double?
    }

    /// `http2:`
    public struct HTTP2: Decodable, Hashable, Sendable {
        public var keepaliveIntervalSeconds: Double?
        public var keepaliveTimeoutSeconds: Double?
        public var idleTimeoutSeconds: Double?
        public var shutdownGraceSeconds: Double?
        public var maxConcurrentStreams: Int?
        public var maxHeaderListSize: Int?
    }

    /// `tls:`
    public struct TLS: Decodable, Hashable, Sendable {
        public var certFile: String
        public var keyFile: String
        public var clientCAFile: String?
        public var controlClientCAFile: String?
    }

    /// `grpc:`
    public struct GRPC: Decodable, Hashable, Sendable {
        public var maxMessageBytes: Int?
    }

    /// One entry of `containers:`.
    public struct Container: Decodable, Hashable, Sendable {
        public var id: String
        public var name: String?
        public var labels: [String: String]?
        public var isolation: String?
        public var env: [String]?
        public var workingDir: String?
        public var user: UInt32?
        public var group: UInt32?
        public var image: String?
        public var main: Main?

        /// `main:`
        public struct Main: Decodable, Hashable, Sendable {
            public var command: [String]
            public var tty: Bool?
            public var stdin: Bool?
            public var stdinOnce: Bool?
        }
    }

    /// Reads and checks `path`.
    public static func load(_ path: String) throws(ServerError) -> ConfigurationFile {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ServerError(code: .invalidConfiguration, message: "cannot read the config file \(path): \(error.localizedDescription)")
        }
        return try Self.parse(text, source: path)
    }

    /// Parses YAML text (`source` names it in errors).
    public static func parse(_ text: String, source: String = "the config file") throws(ServerError) -> ConfigurationFile {
        do {
            guard let node = try Yams.compose(yaml: text) else { return ConfigurationFile() }
            try Self.rejectUnknownKeys(in: node, schema: Self.schema, path: "")
            try Self.rejectOverflowingSexagesimal(in: node)
            return try YAMLDecoder().decode(ConfigurationFile.self, from: node)
        } catch let error as ServerError {
            throw ServerError(code: .invalidConfiguration, message: "\(source): \(error.message)")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw ServerError(code: .invalidConfiguration, message: "\(source): \(Self.path(context.codingPath)): \(context.debugDescription)")
        } catch let DecodingError.keyNotFound(key, context) {
            throw ServerError(code: .invalidConfiguration, message: "\(source): \(Self.path(context.codingPath + [key])) is required")
        } catch {
            throw ServerError(code: .invalidConfiguration, message: "\(source): \(error)")
        }
    }

    init() {}

    /// Applies the file's settings over `configuration`.
    public func apply(to configuration: inout ServerConfiguration) throws(ServerError) {
        if let level = self.logLevel {
            _ = try Logger.Level(parsingLogLevel: level)
        }
        if let format = self.logFormat, LogFormat(parsing: format) == nil {
            throw ServerError(code: .invalidConfiguration, message: "unknown logFormat \"\(format)\" (json or text)")
        }
        if let bytes = self.execSyncMaxOutputBytes {
            guard bytes > 0 else { throw ServerError(code: .invalidConfiguration, message: "execSyncMaxOutputBytes must be positive") }
            configuration.execSyncOutputLimit = bytes
        }
        if let tls = self.tls {
            configuration.tls = TLSFiles(
                certificateChainFile: tls.certFile,
                privateKeyFile: tls.keyFile,
                clientCAFile: tls.clientCAFile,
                controlClientCAFile: tls.controlClientCAFile
            )
        }
        if let group = self.socketGroup {
            configuration.unixSocketGroup = UnixSocketGroup(parsing: group)
        }
        if let controlListen = self.controlListen {
            configuration.controlListenAddresses = []
            for text in controlListen {
                do {
                    configuration.controlListenAddresses.append(try ListenAddress(parsing: text))
                } catch {
                    throw ServerError(code: .invalidConfiguration, message: "controlListen: \(error.message)")
                }
            }
        }
        if let metricsListen = self.metricsListen {
            configuration.metricsListenAddresses = []
            for text in metricsListen {
                do {
                    configuration.metricsListenAddresses.append(try ListenAddress(parsing: text))
                } catch {
                    throw ServerError(code: .invalidConfiguration, message: "metricsListen: \(error.message)")
                }
            }
        }
        if let advertiseAddress = self.advertiseAddress {
            configuration.advertiseHost = advertiseAddress
        }
        if let sessions = self.sessions {
            if let seconds = sessions.postExitDrainSeconds {
                configuration.sessions.postExitDrain = try ServerConfiguration.duration(seconds: seconds, named: "sessions.postExitDrainSeconds")
            }
            if let kill = sessions.killProcessGroupOnDisconnect {
                configuration.sessions.killProcessGroupWhenClientVanishes = kill
            }
            if let limit = sessions.maxConcurrentSessions {
                guard limit > 0 else { throw ServerError(code: .invalidConfiguration, message: "sessions.maxConcurrentSessions must be positive") }
                configuration.sessions.maxConcurrentSessions = limit
            }
            if let seconds = sessions.streamCreationTimeoutSeconds {
                configuration.sessions.streamCreationTimeout = try ServerConfiguration.duration(seconds: seconds, named: "sessions.streamCreationTimeoutSeconds")
            }
            if let seconds = sessions.streamIdleTimeoutSeconds {
                configuration.sessions.streamIdleTimeout = try ServerConfiguration.duration(seconds: seconds, named: "sessions.streamIdleTimeoutSeconds")
            }
        }
        if let http2 = self.http2 {
            if let seconds = http2.keepaliveIntervalSeconds {
                configuration.http2.keepaliveInterval = try ServerConfiguration.duration(seconds: seconds, named: "http2.keepaliveIntervalSeconds")
            }
            if let seconds = http2.keepaliveTimeoutSeconds {
                configuration.http2.keepaliveTimeout = try ServerConfiguration.duration(seconds: seconds, named: "http2.keepaliveTimeoutSeconds")
            }
            if let seconds = http2.idleTimeoutSeconds {
                configuration.http2.idleTimeout = try ServerConfiguration.duration(seconds: seconds, named: "http2.idleTimeoutSeconds")
            }
            if let seconds = http2.shutdownGraceSeconds {
                configuration.http2.gracefulShutdownTimeout = try ServerConfiguration.duration(seconds: seconds, named: "http2.shutdownGraceSeconds")
            }
            if let streams = http2.maxConcurrentStreams {
                configuration.http2.maxConcurrentStreams = streams
            }
            if let size = http2.maxHeaderListSize {
                configuration.http2.maxHeaderListSize = size
            }
        }
        if let bytes = self.grpc?.maxMessageBytes {
            configuration.grpc.maxMessageBytes = bytes
        }
        if let containers = self.containers {
            var declared = try containers.map { container throws(ServerError) in try container.spec() }
            if !declared.contains(where: { $0.id == ServerConfiguration.demoContainer.id }) {
                declared.insert(ServerConfiguration.demoContainer, at: 0)
            }
            configuration.containers = declared
        }
    }

    /// The listen addresses the file names (`listen`, then `criSocket`), or nil for either it
    /// leaves out.
    public func listenAddresses() throws(ServerError) -> (tcp: [ListenAddress]?, unixSocket: String??) {
        var tcp: [ListenAddress]?
        if let listen = self.listen {
            tcp = []
            for text in listen {
                do {
                    tcp!.append(try ListenAddress(parsing: text))
                } catch {
                    throw ServerError(code: .invalidConfiguration, message: "listen: \(error.message)")
                }
            }
        }
        let unixSocket: String?? = self.criSocket.map { $0.isEmpty ? nil : $0 }
        return (tcp, unixSocket)
    }


    // MARK: Unknown keys

    /// The keys each mapping may have, by path ("containers[]" for every list entry).
    private static let schema: [String: Set<String>] = [
        "": [
            "listen", "controlListen", "metricsListen", "criSocket", "socketGroup", "tls", "advertiseAddress", "execSyncMaxOutputBytes", "sessions", "http2", "grpc",
            "containers", "logLevel", "logFormat",
        ],
        "tls": ["certFile", "keyFile", "clientCAFile", "controlClientCAFile"],
        "sessions": [
            "postExitDrainSeconds", "killProcessGroupOnDisconnect", "maxConcurrentSessions", "streamCreationTimeoutSeconds", "streamIdleTimeoutSeconds",
        ],
        "http2": [
            "keepaliveIntervalSeconds", "keepaliveTimeoutSeconds", "idleTimeoutSeconds", "shutdownGraceSeconds", "maxConcurrentStreams",
            "maxHeaderListSize",
        ],
        "grpc": ["maxMessageBytes"],
        "containers[]": ["id", "name", "labels", "isolation", "env", "workingDir", "user", "group", "image", "main"],
        "containers[].main": ["command", "tty", "stdin", "stdinOnce"],
    ]

    private static func rejectUnknownKeys(in node: Node, schema: [String: Set<String>], path: String) throws(ServerError) {
        switch node {
        case .mapping(let mapping):
            guard let known = schema[path] else { return }  // free-form (labels)
            for (key, value) in mapping {
                guard let name = key.string else {
                    throw ServerError(code: .invalidConfiguration, message: "\(path.isEmpty ? "the top level" : path) has a non-string key")
                }
                guard known.contains(name) else {
                    let place = path.isEmpty ? "" : " in \(path)"
                    throw ServerError(code: .invalidConfiguration, message: "unknown key \"\(name)\"\(place)")
                }
                try Self.rejectUnknownKeys(in: value, schema: schema, path: path.isEmpty ? name : "\(path).\(name)")
            }
        case .sequence(let sequence):
            for element in sequence {
                try Self.rejectUnknownKeys(in: element, schema: schema, path: "\(path)[]")
            }
        case .scalar, .alias:
            return
        }
    }

    /// YAML 1.1 reads a plain `1:30` as the base-60 integer 90, and Yams multiplies its digits
    /// without checking: one too long for Int would trap (found by the configuration-file fuzz
    /// target). Such a scalar is refused here, before anything decodes it.
    private static func rejectOverflowingSexagesimal(in node: Node) throws(ServerError) {
        switch node {
        case .scalar(let scalar):
            guard scalar.style == .plain else { return }
            var digits = Substring(scalar.string.replacingOccurrences(of: "_", with: ""))
            if digits.first == "-" || digits.first == "+" {
                digits = digits.dropFirst()
            }
            let parts = digits.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count > 1, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }) else { return }
            var value = 0
            for part in parts {
                let (shifted, shiftOverflow) = value.multipliedReportingOverflow(by: 60)
                let (sum, sumOverflow) = shifted.addingReportingOverflow(Int(part) ?? Int.max)
                guard Int(part) != nil, !shiftOverflow, !sumOverflow else {
                    throw ServerError(code: .invalidConfiguration, message: "\(scalar.string.prefix(40)) is a base-60 number (a:b) too large for an integer")
                }
                value = sum
            }
        case .mapping(let mapping):
            for (key, value) in mapping {
                try Self.rejectOverflowingSexagesimal(in: key)
                try Self.rejectOverflowingSexagesimal(in: value)
            }
        case .sequence(let sequence):
            for element in sequence {
                try Self.rejectOverflowingSexagesimal(in: element)
            }
        case .alias:
            return
        }
    }

    private static func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
    }
}

extension ConfigurationFile.Container {
    func spec() throws(ServerError) -> ContainerSpec {
        guard !self.id.isEmpty, !self.id.contains("/") else {
            throw ServerError(code: .invalidConfiguration, message: "containers: an id must be non-empty and without \"/\": \"\(self.id)\"")
        }
        let isolation: ContainerIsolation
        switch self.isolation {
        case nil:
            isolation = .host
        case let name?:
            guard let known = ContainerIsolation(rawValue: name) else {
                throw ServerError(code: .invalidConfiguration, message: "containers[\(self.id)]: isolation must be host or namespaces, not \"\(name)\"")
            }
            isolation = known
        }
        var main: MainProcessSpec?
        if let spec = self.main {
            guard !spec.command.isEmpty else {
                throw ServerError(code: .invalidConfiguration, message: "containers[\(self.id)].main: command must not be empty")
            }
            main = MainProcessSpec(command: spec.command, tty: spec.tty ?? false, stdin: spec.stdin ?? true, stdinOnce: spec.stdinOnce ?? false)
        }
        return ContainerSpec(
            id: self.id,
            name: self.name,
            labels: self.labels ?? [:],
            isolation: isolation,
            environment: self.env ?? ContainerSpec.defaultEnvironment,
            workingDirectory: self.workingDir,
            userID: self.user,
            groupID: self.group,
            mainProcess: main,
            image: self.image
        )
    }
}
