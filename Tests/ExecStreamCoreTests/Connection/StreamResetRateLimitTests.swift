import ExecStreamCore
import NIOCore
import Testing

@Suite("Rapid-reset guard")
struct StreamResetRateLimitTests {
    /// Spends `count` resets at `now`: how many were allowed.
    func spend(_ limit: inout StreamResetRateLimit, _ count: Int, at now: NIODeadline) -> Int {
        (0..<count).filter { _ in limit.abandonedStreamReset(now: now) }.count
    }

    @Test("the burst is allowed, the next reset is not, and time refills at the rate, up to the burst")
    func bucket() {
        var limit = StreamResetRateLimit(burst: 3, ratePerSecond: 2)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(self.spend(&limit, 4, at: start) == 3)
        // Half a second buys one token back; a long pause refills no more than the burst.
        #expect(self.spend(&limit, 2, at: start + .milliseconds(500)) == 1)
        #expect(self.spend(&limit, 5, at: start + .seconds(60)) == 3)
    }
}
