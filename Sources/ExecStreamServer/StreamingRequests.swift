public import ExecStreamCore
import NIOCore
import Synchronization

/// A CRI streaming request waiting for its client to open `/exec|attach|portforward/{token}`.
/// The cached request is authoritative: what the URL's query says is ignored.
public enum StreamingRequest: Hashable, Sendable {
    /// Exec: command and streams.
    case exec(containerID: String, command: [String], tty: Bool, stdin: Bool, stdout: Bool, stderr: Bool)
    /// Attach: streams.
    case attach(containerID: String, tty: Bool, stdin: Bool, stdout: Bool, stderr: Bool)
    /// Port-forward: the sandbox and its ports.
    case portForward(sandboxID: String, ports: [Int32])
}

/// The token cache behind a lock, reading the clock for it.
public final class StreamingRequestCache: Sendable {
    private let cache: Mutex<TokenCache<StreamingRequest>>

    public init(configuration: TokenCache<StreamingRequest>.Configuration = .init()) {
        self.cache = Mutex(TokenCache(configuration: configuration))
    }

    /// Stores a request and returns its one-time token.
    public func insert(_ request: StreamingRequest, kind: StreamingRequestKind) throws(ExecStreamError) -> StreamingToken {
        let now = NIODeadline.now()
        return try self.cache.withLock { (cache: inout TokenCache<StreamingRequest>) throws(ExecStreamError) in
            try cache.insert(request, kind: kind, now: now)
        }
    }

    /// Whether `consume` would succeed now (the token is not spent).
    /// Tokens issued and neither redeemed nor expired yet.
    public var count: Int {
        self.cache.withLock { $0.count }
    }

    public func isRedeemable(_ token: StreamingToken, kind: StreamingRequestKind) -> Bool {
        let now = NIODeadline.now()
        return self.cache.withLock { $0.isRedeemable(token, kind: kind, now: now) }
    }

    /// Takes the request behind a token (single use).
    public func consume(_ token: StreamingToken, kind: StreamingRequestKind) throws(ExecStreamError) -> StreamingRequest {
        let now = NIODeadline.now()
        return try self.cache.withLock { (cache: inout TokenCache<StreamingRequest>) throws(ExecStreamError) in
            try cache.consume(token, kind: kind, now: now)
        }
    }
}
