public import NIOCore

/// The rapid-reset guard (CVE-2023-44487): a token bucket of `burst` tokens refilled at
/// `ratePerSecond`, one token per stream the peer resets while its response is still being made.
///
/// Resets of streams whose response is already complete cost nothing: gRPC clients reset every
/// call the server ends before they half-close (containerd's streams, cancelled reads), and a
/// sidecar that serves many short calls on one connection must not be cut off for that. A reset
/// that abandons work in progress is what an attack is made of. No I/O: the owner passes `now`.
public struct StreamResetRateLimit: Sendable {
    private let burst: Double
    private let ratePerSecond: Double
    private var tokens: Double
    private var lastRefill: NIODeadline?

    public init(burst: Int, ratePerSecond: Int) {
        precondition(burst > 0 && ratePerSecond >= 0, "a reset budget needs a positive burst")
        self.burst = Double(burst)
        self.ratePerSecond = Double(ratePerSecond)
        self.tokens = Double(burst)
    }

    /// The peer reset a stream whose response was not complete. False once the budget is spent:
    /// the connection must end with GOAWAY.
    public mutating func abandonedStreamReset(now: NIODeadline) -> Bool {
        if let lastRefill = self.lastRefill, now > lastRefill {
            let elapsed = Double((now - lastRefill).nanoseconds) / 1e9
            self.tokens = min(self.burst, self.tokens + elapsed * self.ratePerSecond)
        }
        self.lastRefill = now
        guard self.tokens >= 1 else { return false }
        self.tokens -= 1
        return true
    }
}
