/// The receiver's side of credit flow control for a client's stdin (containerd's `WindowUpdate`,
/// PROTOCOLS.md §8, and the stdin window of a resumable native attach, §9): the client may send
/// only what it was granted; credit comes back as the stdin channel takes bytes, and is owed,
/// not granted, while the channel is above its high watermark. Memory stays bounded by the
/// window however fast the client sends. No I/O.
public struct InputCreditLedger: Hashable, Sendable {
    /// What the owner does next.
    public enum Action: Hashable, Sendable {
        /// Nothing.
        case none
        /// Grant the client this many more bytes.
        case grant(Int64)
        /// The channel is full: call `resumed` once it has room (arm one callback).
        case awaitResume
    }

    /// Bytes the client was sent beyond its credit.
    public struct CreditExceeded: Error, Hashable, Sendable {
        /// The size of what arrived.
        public var byteCount: Int64
        /// The credit the client had.
        public var credit: Int64
    }

    /// The credit granted up front.
    public let window: Int64
    /// Credit granted and not yet used.
    public private(set) var outstanding: Int64 = 0
    /// Bytes taken while the channel was full, to grant back once it has room.
    private var owed: Int64 = 0
    /// A resume callback is armed.
    private var awaitingResume = false

    public init(window: Int64) {
        precondition(window > 0, "a window must let bytes through")
        self.window = window
    }

    /// The first grant: the whole window.
    public mutating func start() -> Int64 {
        self.outstanding += self.window
        return self.window
    }

    /// The client sent `byteCount` bytes; the owner hands them to the channel next.
    public mutating func received(_ byteCount: Int64) throws(CreditExceeded) {
        guard byteCount <= self.outstanding else { throw CreditExceeded(byteCount: byteCount, credit: self.outstanding) }
        self.outstanding -= byteCount
    }

    /// The channel took `byteCount` bytes; `channelPaused` says whether it is now full.
    public mutating func taken(_ byteCount: Int64, channelPaused: Bool) -> Action {
        guard byteCount > 0 else { return .none }
        if channelPaused || self.awaitingResume {
            self.owed += byteCount
            return self.armResume()
        }
        self.outstanding += byteCount
        return .grant(byteCount)
    }

    /// The channel resumed (the armed callback ran); `channelPaused` is its state now (it may
    /// have filled again meanwhile).
    public mutating func resumed(channelPaused: Bool) -> Action {
        self.awaitingResume = false
        guard self.owed > 0 else { return .none }
        if channelPaused {
            return self.armResume()
        }
        let owed = self.owed
        self.owed = 0
        self.outstanding += owed
        return .grant(owed)
    }

    private mutating func armResume() -> Action {
        guard !self.awaitingResume else { return .none }
        self.awaitingResume = true
        return .awaitResume
    }
}
