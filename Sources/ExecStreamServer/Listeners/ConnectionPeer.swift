public import ExecStreamCore
public import GRPCCore

/// What a connection knows about its peer: the listener it came through (and so which planes it
/// may use) and who the peer is. Made once per connection, when its protocol is known; it
/// travels with every control call (`ServerContext.peer`) and every streaming session (the
/// `peer` of its log lines).
public struct ConnectionPeer: Hashable, Sendable, ServerContext.TransportSpecific, CustomStringConvertible {
    /// The listener, for the trust boundary.
    public let access: ListenerAccess
    /// Who is calling.
    public let identity: PeerIdentity

    public init(access: ListenerAccess, identity: PeerIdentity) {
        self.access = access
        self.identity = identity
    }

    public var description: String { "\(self.identity) via \(self.access)" }
}

extension ServerContext {
    /// The peer of a call that reached a handler through ExecStream's listeners.
    public var peer: ConnectionPeer? {
        self.transportSpecific as? ConnectionPeer
    }
}
