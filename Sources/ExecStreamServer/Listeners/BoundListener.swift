public import ExecStreamCore

/// A listener once bound: its address (a TCP port 0 replaced by the real one) and what it serves.
public struct BoundListener: Hashable, Sendable, CustomStringConvertible {
    /// Where it listens.
    public let address: ListenAddress
    /// Which planes it serves, and how it knows its peers.
    public let access: ListenerAccess
    /// A unix socket's mode and group, as installed ("0600", "0660 group execstream").
    let socketPermissions: String?

    init(address: ListenAddress, access: ListenerAccess, socketPermissions: String? = nil) {
        self.address = address
        self.access = access
        self.socketPermissions = socketPermissions
    }

    /// `http://HOST:PORT` or `https://HOST:PORT` for a TCP listener; nil otherwise.
    public var baseURL: String? {
        guard case .tcp = self.address else { return nil }
        return "\(self.access.usesTLS ? "https" : "http")://\(self.address)"
    }

    /// What `execstream serve` prints after "listening on ".
    public var description: String {
        let location = self.baseURL ?? "\(self.address)"
        switch self.access.kind {
        case .unixSocket:
            return "\(location) (control and data planes, mode \(self.socketPermissions ?? "0600"))"
        case .vsock:
            return "\(location) (control and data planes)"
        case .controlTCP:
            return "\(location) (control and data planes, mutual TLS)"
        case .dataTCP(_, .plain):
            return "\(location) (data plane)"
        case .dataTCP(_, .tls):
            return "\(location) (data plane, TLS)"
        case .dataTCP(_, .mutualTLS):
            return "\(location) (data plane, mutual TLS)"
        }
    }
}
