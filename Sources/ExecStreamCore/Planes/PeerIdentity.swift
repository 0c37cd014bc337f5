/// Who is on the other end of a connection, as far as the listener can tell.
///
/// Every control call and every streaming session carries one (see `ListenerAccess`): audit
/// lines and metrics name the peer with it. It never holds a secret: a token holder is described
/// by its address, never by its token.
public enum PeerIdentity: Hashable, Sendable, CustomStringConvertible {
    /// A process on this machine, by the unix socket's peer credentials (`SO_PEERCRED`).
    case unixPeer(uid: UInt32, gid: UInt32, pid: Int32)
    /// The other end of a vsock connection: in a VM guest, the host (context id 2) or a sibling.
    case vsockPeer(contextID: UInt32?)
    /// A TLS client whose certificate chain the listener verified against its client CA.
    /// `subject` is the leaf certificate's subject (RFC 4514 form).
    case certificate(subject: String, address: String)
    /// A network peer nobody vouches for: it may use what it holds (a one-time streaming URL, the
    /// health endpoints) and nothing else.
    case tokenHolder(address: String)

    public var description: String {
        switch self {
        case .unixPeer(let uid, let gid, let pid):
            return "unix uid=\(uid) gid=\(gid) pid=\(pid)"
        case .vsockPeer(let contextID?):
            return "vsock cid=\(contextID)"
        case .vsockPeer(nil):
            return "vsock"
        case .certificate(let subject, let address):
            return "certificate \"\(subject)\" at \(address)"
        case .tokenHolder(let address):
            return "token holder at \(address)"
        }
    }
}

/// A certificate subject in RFC 4514 form: the relative distinguished names in reverse order of
/// the certificate's encoding, `,`-separated, with the characters RFC 4514 §2.4 names escaped.
public enum DistinguishedName {
    /// `attributes` in the certificate's order (`("CN", "node-1")`, …); unknown types as their
    /// dotted object identifier.
    public static func rfc4514(_ attributes: [(type: String, value: String)]) -> String {
        attributes.reversed().map { "\($0.type)=\(Self.escaped($0.value))" }.joined(separator: ",")
    }

    private static func escaped(_ value: String) -> String {
        var result = ""
        let scalars = Array(value.unicodeScalars)
        for (index, scalar) in scalars.enumerated() {
            switch scalar {
            case "\"", "+", ",", ";", "<", ">", "\\":
                result += "\\\(scalar)"
            case "#" where index == 0, " " where index == 0 || index == scalars.count - 1:
                result += "\\\(scalar)"
            case "\0":
                result += "\\00"
            default:
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
