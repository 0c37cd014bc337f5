public import NIOCore

/// Which streaming endpoint a token opens. A token of one kind is unknown to the others.
public enum StreamingRequestKind: String, Hashable, Sendable, CaseIterable {
    /// `/exec/{token}`
    case exec
    /// `/attach/{token}`
    case attach
    /// `/portforward/{token}`
    case portForward = "portforward"
}

/// A one-time streaming token: 128 random bits in unpadded base64url (22 characters).
public struct StreamingToken: Hashable, Sendable, CustomStringConvertible {
    /// The token as it appears in the URL.
    public var rawValue: String

    public init(rawValue: String) {
        self.rawValue = rawValue
    }

    /// The number of random bytes in a token.
    public static let randomByteCount = 16

    public var description: String { self.rawValue }
}

/// The cache behind CRI `Exec`/`Attach`/`PortForward`: each call stores its request under a fresh
/// one-time token, and the streaming endpoint consumes it. No I/O and no clock reads: the owner
/// passes `now` and keeps the cache behind a lock.
///
/// As the kubelet streaming library does: entries live for a TTL (60 s by default); at most
/// `maxInFlight` unexpired entries exist (1,000 by default; then `resourceExhausted`); a token is
/// single use, and consuming it removes the entry even when it has expired. Unlike it, tokens carry
/// 128 random bits, and a token issued for one kind of request is not found for another (and is
/// left in place, so a wrong-kind probe cannot burn it).
public struct TokenCache<Request: Sendable>: Sendable {
    /// Limits of the cache.
    public struct Configuration: Hashable, Sendable {
        /// How long a token stays valid.
        public var ttl: TimeAmount
        /// How many unexpired tokens may exist at once.
        public var maxInFlight: Int

        /// 60 seconds, 1,000 tokens: the kubelet streaming library's defaults.
        public init(ttl: TimeAmount = .seconds(60), maxInFlight: Int = 1000) {
            precondition(maxInFlight > 0, "the token cache must hold at least one token")
            self.ttl = ttl
            self.maxInFlight = maxInFlight
        }
    }

    private struct Entry: Sendable {
        var kind: StreamingRequestKind
        var request: Request
        var expiry: NIODeadline
    }

    /// The cache's limits.
    public let configuration: Configuration
    private var entries: [StreamingToken: Entry] = [:]

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// Entries held, expired or not (expired ones go on the next insert into a full cache, on
    /// `removeExpired`, or when consumed).
    public var count: Int { self.entries.count }

    /// Stores `request` under a fresh token, drawing randomness from the system.
    public mutating func insert(_ request: Request, kind: StreamingRequestKind, now: NIODeadline) throws(ExecStreamError) -> StreamingToken {
        var generator = SystemRandomNumberGenerator()
        return try self.insert(request, kind: kind, now: now, using: &generator)
    }

    /// Stores `request` under a fresh token drawn from `generator`. When the cache is full of
    /// unexpired tokens, fails with `resourceExhausted`.
    public mutating func insert<Generator: RandomNumberGenerator>(
        _ request: Request,
        kind: StreamingRequestKind,
        now: NIODeadline,
        using generator: inout Generator
    ) throws(ExecStreamError) -> StreamingToken {
        if self.entries.count >= self.configuration.maxInFlight {
            self.removeExpired(now: now)
        }
        guard self.entries.count < self.configuration.maxInFlight else {
            throw ExecStreamError(code: .resourceExhausted, message: "maximum number of in-flight requests exceeded")
        }
        var token: StreamingToken
        repeat {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(StreamingToken.randomByteCount)
            while bytes.count < StreamingToken.randomByteCount {
                withUnsafeBytes(of: generator.next()) { bytes.append(contentsOf: $0) }
            }
            token = StreamingToken(rawValue: Base64.encodeURLSafeUnpadded(bytes))
        } while self.entries[token] != nil
        self.entries[token] = Entry(kind: kind, request: request, expiry: now + self.configuration.ttl)
        return token
    }

    /// Takes the request stored under `token` for an endpoint of `kind`. The token is spent
    /// whether or not it had expired; an unknown, spent, expired or wrong-kind token is `notFound`.
    public mutating func consume(_ token: StreamingToken, kind: StreamingRequestKind, now: NIODeadline) throws(ExecStreamError) -> Request {
        guard let entry = self.entries[token], entry.kind == kind else {
            throw ExecStreamError(code: .notFound, message: "unknown or expired \(kind.rawValue) token")
        }
        self.entries[token] = nil
        guard now < entry.expiry else {
            throw ExecStreamError(code: .notFound, message: "unknown or expired \(kind.rawValue) token")
        }
        return entry.request
    }

    /// Whether `consume` would succeed now, without spending the token: an endpoint checks the
    /// token first (404 before anything else) and spends it only once the request is acceptable.
    public func isRedeemable(_ token: StreamingToken, kind: StreamingRequestKind, now: NIODeadline) -> Bool {
        guard let entry = self.entries[token] else { return false }
        return entry.kind == kind && now < entry.expiry
    }

    /// Drops every expired entry.
    public mutating func removeExpired(now: NIODeadline) {
        self.entries = self.entries.filter { now < $0.value.expiry }
    }
}
