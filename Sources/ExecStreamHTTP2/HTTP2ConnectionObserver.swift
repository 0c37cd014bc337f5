/// What an HTTP/2 server connection tells whoever watches connections (metrics): that it opened
/// and closed, and every GOAWAY and RST_STREAM each way, with its error code. Called on the
/// connection's event loop; the connection handler reports, nothing else does.
public protocol HTTP2ConnectionObserver: Sendable {
    /// The connection speaks HTTP/2 now (the handler is in place).
    func connectionOpened()
    /// The connection has closed (once, after `connectionOpened`).
    func connectionClosed()
    /// A GOAWAY went out (`sent`) or came in, with `code` (RFC 9113 §7).
    func goAway(code: UInt32, sent: Bool)
    /// An RST_STREAM went out (`sent`) or came in, with `code`.
    func streamReset(code: UInt32, sent: Bool)
}

/// Observes nothing: for connections nobody watches (tests, tools).
public struct NoHTTP2ConnectionObserver: HTTP2ConnectionObserver {
    public init() {}
    public func connectionOpened() {}
    public func connectionClosed() {}
    public func goAway(code: UInt32, sent: Bool) {}
    public func streamReset(code: UInt32, sent: Bool) {}
}
