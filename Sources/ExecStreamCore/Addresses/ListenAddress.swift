/// Where the server listens, and where clients connect. Every listener serves the same protocols
/// (gRPC, streaming, HTTP/1.1).
public enum ListenAddress: Hashable, Sendable, CustomStringConvertible {
    /// TCP on a host (IPv4 or IPv6 literal, or a name) and port; port 0 picks a free one.
    case tcp(host: String, port: Int)
    /// A unix domain socket, created with mode 0600.
    case unix(path: String)
    /// AF_VSOCK on any context id (a VM guest's agent port).
    case vsock(port: UInt32)

    /// Parses `HOST:PORT`, `[IPV6]:PORT`, `unix:///path` (or `unix:/path`), `vsock://:PORT`
    /// (or `vsock://any:PORT`).
    public init(parsing text: String) throws(ExecStreamError) {
        if text.hasPrefix("unix://") || text.hasPrefix("unix:") {
            let path = text.hasPrefix("unix://") ? String(text.dropFirst("unix://".count)) : String(text.dropFirst("unix:".count))
            guard path.hasPrefix("/") else {
                throw ExecStreamError(code: .invalidArgument, message: "a unix socket address needs an absolute path: \(text)")
            }
            self = .unix(path: path)
            return
        }
        if text.hasPrefix("vsock://") {
            let rest = text.dropFirst("vsock://".count)
            guard let colon = rest.lastIndex(of: ":"), let port = UInt32(rest[rest.index(after: colon)...]),
                ["", "any", "-1"].contains(String(rest[..<colon]))
            else {
                throw ExecStreamError(code: .invalidArgument, message: "a vsock address looks like vsock://:PORT: \(text)")
            }
            self = .vsock(port: port)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ExecStreamError(code: .invalidArgument, message: "a TCP address looks like HOST:PORT: \(text)")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        }
        guard !host.isEmpty else {
            throw ExecStreamError(code: .invalidArgument, message: "a TCP address needs a host: \(text)")
        }
        self = .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port):
            return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path):
            return "unix://\(path)"
        case .vsock(let port):
            return "vsock://:\(port)"
        }
    }
}
