import ArgumentParser
import ExecStreamClient
import ExecStreamHTTP2
import ExecStreamProtos
import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// `execstream port-forward`: local ports that lead to ports of a container's sandbox, as
/// `crictl port-forward` and `kubectl port-forward` do.
struct PortForwardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "port-forward",
        abstract: "Forward local ports to ports of a container's sandbox; runs until interrupted.",
        discussion: """
            Each PORT is [LOCAL:]REMOTE: 8080:80 listens on 8080 for port 80; 80 on 80 for 80; :80 \
            or 0:80 on a free port, which is printed. Listeners are on 127.0.0.1 and ::1 only. \
            Every connection is its own one-time port-forward stream on the server's connection.
            """
    )

    @OptionGroup var server: ServerOptions

    @Argument(help: "The container (its sandbox) whose ports to reach.")
    var container: String

    @Argument(help: "[LOCAL:]REMOTE, one or more.")
    var ports: [String]

    func validate() throws {
        guard !self.ports.isEmpty else { throw ValidationError("at least one [LOCAL:]REMOTE port is needed") }
        _ = try self.ports.map(PortMapping.init(parsing:))
    }

    func run() async throws {
        let mappings = try self.ports.map(PortMapping.init(parsing:))
        let code = await ClientFailure.reporting {
            let client = try await self.server.connect()
            var listeners: [(listener: LocalListener, remote: UInt16)] = []
            for mapping in mappings {
                for listener in try await LocalListener.bind(port: mapping.local) {
                    listeners.append((listener, mapping.remote))
                    StandardIO.write(Array("Forwarding from \(listener.displayedAddress) -> \(mapping.remote)\n".utf8), to: STDOUT_FILENO)
                }
            }
            let container = self.container
            let signals = Self.exitOnInterrupt()
            defer { withExtendedLifetime(signals) {} }
            await withTaskGroup(of: Void.self) { group in
                for (listener, remote) in listeners {
                    group.addTask {
                        await listener.accept { connection in
                            await Forwarder(client: client, container: container, remote: remote, localPort: listener.port).forward(connection)
                        }
                    }
                }
            }
            return 0
        }
        throw ExitCode(code)
    }

    /// ^C or SIGTERM ends the command at once, with success: that is how it is meant to end.
    private static func exitOnInterrupt() -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { signalNumber in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber)
            source.setEventHandler { Glibc.exit(0) }
            source.resume()
            return source
        }
    }
}

/// One `[LOCAL:]REMOTE` argument.
struct PortMapping: Hashable {
    /// 0: any free port.
    var local: UInt16
    var remote: UInt16

    init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let remote = parts.last.flatMap({ UInt16($0) }), remote > 0 else {
            throw ValidationError("invalid port \"\(text)\": expected [LOCAL:]REMOTE with ports 1-65535")
        }
        self.remote = remote
        if parts.count == 2 {
            guard let local = parts[0].isEmpty ? 0 : UInt16(parts[0]) else {
                throw ValidationError("invalid port \"\(text)\": expected [LOCAL:]REMOTE with ports 1-65535")
            }
            self.local = local
        } else {
            self.local = remote
        }
    }
}

/// A listening socket on a loopback address.
struct LocalListener: Sendable {
    typealias Connection = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    let server: NIOAsyncChannel<Connection, Never>
    let host: String
    let port: UInt16

    var displayedAddress: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }

    /// Listeners on 127.0.0.1 and ::1 for `port` (0: a free one, the same on both). ::1 is left
    /// out where the host has no IPv6 loopback; 127.0.0.1 must bind. A free port that another
    /// process holds on ::1 is given up for another one (the port is free on both, not only on
    /// 127.0.0.1).
    static func bind(port: UInt16) async throws(ClientError) -> [LocalListener] {
        var attempts = 0
        while true {
            let v4: LocalListener
            do {
                v4 = try await Self.bind(host: "127.0.0.1", port: port)
            } catch {
                throw ClientError(code: .unavailable, message: "cannot listen on 127.0.0.1:\(port): \(Self.describe(error))")
            }
            do {
                return [v4, try await Self.bind(host: "::1", port: v4.port)]
            } catch let error as IOError where error.errnoCode == EADDRNOTAVAIL || error.errnoCode == EAFNOSUPPORT {
                return [v4]
            } catch {
                try? await v4.server.channel.close()
                attempts += 1
                let taken = (error as? IOError)?.errnoCode == EADDRINUSE
                guard port == 0, taken, attempts < Self.freePortAttempts else {
                    throw ClientError(code: .unavailable, message: "cannot listen on [::1]:\(v4.port): \(Self.describe(error))")
                }
            }
        }
    }

    /// How many free ports are tried before giving up on one free on both addresses.
    private static let freePortAttempts = 32

    private static func bind(host: String, port: UInt16) async throws -> LocalListener {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(host: host, port: Int(port)) { channel in
                channel.eventLoop.makeCompletedFuture { try Connection(wrappingChannelSynchronously: channel) }
            }
        let bound = UInt16(server.channel.localAddress?.port ?? Int(port))
        return LocalListener(server: server, host: host, port: bound)
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)).lowercased() }
        return "\(error)"
    }

    /// Serves each accepted connection with `handle`, concurrently, until the listener closes.
    func accept(_ handle: @escaping @Sendable (Connection) async -> Void) async {
        try? await self.server.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { group in
                for try await connection in inbound {
                    group.addTask { await handle(connection) }
                }
            }
        }
    }
}

/// Carries one local connection to the remote port and back.
struct Forwarder: Sendable {
    let client: CRIClient
    let container: String
    let remote: UInt16
    let localPort: UInt16

    func forward(_ connection: LocalListener.Connection) async {
        StandardIO.write(Array("Handling connection for \(self.localPort)\n".utf8), to: STDOUT_FILENO)
        do {
            let request = Runtime_V1_PortForwardRequest.with {
                $0.podSandboxID = self.container
                $0.port = [Int32(self.remote)]
            }
            let url = try await self.client.portForward(request).url
            let (stream, events) = try await PortForwardStream.open(url: url, port: self.remote, on: self.client.connection)
            let errors = try await connection.executeThenClose { inbound, outbound in
                try await Self.pump(inbound: inbound, outbound: outbound, stream: stream, events: events)
            }
            await stream.close()
            if !errors.isEmpty {
                self.report(errors)
            }
        } catch let error as ClientError {
            try? await connection.channel.close()
            self.report(error.message)
        } catch {
            try? await connection.channel.close()
            self.report("\(error)")
        }
    }

    /// Both directions at once. The remote side's end ends the connection; the local side's end
    /// of file is not passed on (the protocol has no half-close) but its reset is.
    private static func pump(
        inbound: NIOAsyncChannelInboundStream<ByteBuffer>,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        stream: PortForwardStream,
        events: HTTP2ClientResponse.AsyncIterator
    ) async throws -> String {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await chunk in inbound {
                        try await stream.send(chunk)
                    }
                } catch {
                    // A reset, or a send that failed: the remote side goes too.
                    stream.cancel()
                    throw error
                }
            }
            var events = events
            let errors = try await PortForwardStream.receive(&events, port: stream.port) { try await outbound.write($0) }
            group.cancelAll()
            return errors
        }
    }

    private func report(_ message: String) {
        let text = "execstream: an error occurred forwarding \(self.localPort) -> \(self.remote): \(message.trimmingCharacters(in: .whitespacesAndNewlines))\n"
        StandardIO.write(Array(text.utf8), to: STDERR_FILENO)
    }
}
