/// The trust boundary: which plane a listener serves, decided once per call from what the
/// listener knows about its peers.
///
/// ```
///                      ┌───────────── control plane ─────────────┐  ┌──── data plane ────┐
///                      CRI RuntimeService/ImageService, Containers,   /exec /attach /portforward
///                      containerd Streaming/Stream                    (one-time tokens), /healthz,
///                                                                     grpc.health.v1.Health
///  unix socket (0600 / 0660 + group, SO_PEERCRED)      served                 served
///  vsock (the VM's host)                               served                 served
///  TCP --control-listen, mutual TLS (subject)          served                 served
///  TCP --listen: plain, TLS, or TLS + client CA        PERMISSION_DENIED      served
/// ```
///
/// Whatever can run or reach a process is control plane and is served only where the peer is
/// known; a network peer nobody vouches for may use what it holds (a one-time URL) and the health
/// endpoints, as containerd's streaming port. The decision is made before any handler runs.
public struct ListenerAccess: Hashable, Sendable, CustomStringConvertible {
    /// How peers reach the listener, and so what it knows about them.
    public enum Kind: Hashable, Sendable {
        /// A unix socket: local processes the socket's mode and group admit (peer credentials).
        case unixSocket(path: String)
        /// AF_VSOCK: in a VM guest, the host.
        case vsock(port: UInt32)
        /// TCP serving the data plane only, in plain text or TLS, with or without a client CA.
        case dataTCP(address: String, security: TCPSecurity)
        /// TCP serving the control plane: TLS with a client certificate verified against the
        /// control client CA (the configuration refuses anything less).
        case controlTCP(address: String)
    }

    /// What a data-plane TCP listener does about transport security.
    public enum TCPSecurity: Hashable, Sendable {
        /// No TLS.
        case plain
        /// TLS; clients are not asked for a certificate.
        case tls
        /// TLS, and a client certificate verified against the streaming client CA.
        case mutualTLS
    }

    /// How the listener was set up.
    public let kind: Kind

    public init(_ kind: Kind) {
        self.kind = kind
    }

    /// gRPC services of the data plane: they reach no process.
    public static let dataPlaneServices: Set<String> = ["grpc.health.v1.Health"]

    /// Whether control calls may be served here.
    public var servesControlPlane: Bool {
        switch self.kind {
        case .unixSocket, .vsock, .controlTCP:
            return true
        case .dataTCP:
            return false
        }
    }

    /// Whether peers are told apart by the transport (TLS) rather than by the token they hold.
    public var usesTLS: Bool {
        switch self.kind {
        case .unixSocket, .vsock:
            return false
        case .controlTCP:
            return true
        case .dataTCP(_, let security):
            switch security {
            case .plain: return false
            case .tls, .mutualTLS: return true
            }
        }
    }

    /// Whether a gRPC call to `service` may run on this listener. A refusal says which listener
    /// refused and what would allow the call, without naming anything the caller sent but the
    /// method.
    public func admit(service: String, method: String) -> Admission {
        if Self.dataPlaneServices.contains(service) || self.servesControlPlane {
            return .admitted
        }
        let name = "\(Self.bounded(service))/\(Self.bounded(method))"
        return .refused(
            message: "\(name) is a control-plane call and \(self) serves only the data plane (streaming URLs and health); "
                + "call it on the unix socket, on vsock, or on a --control-listen address with mutual TLS"
        )
    }

    /// The answer of `admit`.
    public enum Admission: Hashable, Sendable {
        /// The call may run.
        case admitted
        /// The call must not run: PERMISSION_DENIED with this message.
        case refused(message: String)
    }

    public var description: String {
        switch self.kind {
        case .unixSocket(let path):
            return "listener unix://\(path)"
        case .vsock(let port):
            return "listener vsock://:\(port)"
        case .controlTCP(let address):
            return "listener \(address) (control plane, mutual TLS)"
        case .dataTCP(let address, .plain):
            return "listener \(address) (plain TCP)"
        case .dataTCP(let address, .tls):
            return "listener \(address) (TLS)"
        case .dataTCP(let address, .mutualTLS):
            return "listener \(address) (mutual TLS, data plane)"
        }
    }

    /// A method name as the client sent it, cut to a length fit for a status message.
    private static func bounded(_ text: String) -> String {
        text.utf8.count <= 128 ? text : String(decoding: text.utf8.prefix(128), as: UTF8.self) + "…"
    }
}
