import ExecStreamCore
import NIOCore
import Testing

@Suite("TokenCache")
struct TokenCacheTests {
    let start = NIODeadline.uptimeNanoseconds(5_000_000_000)

    @Test("tokens are 128 random bits in unpadded base64url")
    func tokenShape() throws {
        var cache = TokenCache<String>()
        var seen = Set<StreamingToken>()
        for index in 0..<200 {
            let token = try cache.insert("request \(index)", kind: .exec, now: self.start)
            #expect(token.rawValue.count == 22)
            #expect(token.rawValue.utf8.allSatisfy { byte in
                (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
            })
            #expect(seen.insert(token).inserted)
        }
    }

    @Test("a token is single use")
    func singleUse() throws {
        var cache = TokenCache<String>()
        let token = try cache.insert("echo hi", kind: .exec, now: self.start)
        #expect(try cache.consume(token, kind: .exec, now: self.start) == "echo hi")
        #expect(throws: ExecStreamError(code: .notFound, message: "unknown or expired exec token")) {
            try cache.consume(token, kind: .exec, now: self.start)
        }
        #expect(cache.count == 0)
    }

    @Test("checking a token does not spend it; expired, spent and wrong-kind tokens are not redeemable")
    func redeemable() throws {
        var cache = TokenCache<String>()
        let token = try cache.insert("echo hi", kind: .exec, now: self.start)
        #expect(cache.isRedeemable(token, kind: .exec, now: self.start))
        #expect(cache.isRedeemable(token, kind: .exec, now: self.start))
        #expect(!cache.isRedeemable(token, kind: .attach, now: self.start))
        #expect(!cache.isRedeemable(token, kind: .exec, now: self.start + .seconds(60)))
        _ = try cache.consume(token, kind: .exec, now: self.start)
        #expect(!cache.isRedeemable(token, kind: .exec, now: self.start))
    }

    @Test("a token expires after its TTL (60 s by default) and is spent by the attempt")
    func expiry() throws {
        var cache = TokenCache<String>()
        let early = try cache.insert("a", kind: .attach, now: self.start)
        let late = try cache.insert("b", kind: .attach, now: self.start)
        #expect(try cache.consume(early, kind: .attach, now: self.start + .seconds(59)) == "a")
        #expect(throws: ExecStreamError.self) { try cache.consume(late, kind: .attach, now: self.start + .seconds(60)) }
        #expect(cache.count == 0)
    }

    @Test("a token of one kind is unknown to the others, and survives the probe", arguments: StreamingRequestKind.allCases)
    func kindsAreSeparate(kind: StreamingRequestKind) throws {
        var cache = TokenCache<Int>()
        let token = try cache.insert(7, kind: kind, now: self.start)
        for other in StreamingRequestKind.allCases where other != kind {
            let error = #expect(throws: ExecStreamError.self) { try cache.consume(token, kind: other, now: self.start) }
            #expect(error?.code == .notFound)
        }
        #expect(try cache.consume(token, kind: kind, now: self.start) == 7)
    }

    @Test("at most maxInFlight unexpired tokens (1,000 by default), then resourceExhausted; expired ones make room")
    func bounded() throws {
        var cache = TokenCache<Int>()
        #expect(cache.configuration.maxInFlight == 1000)
        for index in 0..<1000 {
            _ = try cache.insert(index, kind: .exec, now: self.start + .milliseconds(Int64(index)))
        }
        let error = #expect(throws: ExecStreamError.self) { try cache.insert(1000, kind: .exec, now: self.start + .seconds(1)) }
        #expect(error == ExecStreamError(code: .resourceExhausted, message: "maximum number of in-flight requests exceeded"))
        // 60.5 s after the start, the first 501 tokens have expired.
        _ = try cache.insert(1000, kind: .exec, now: self.start + .milliseconds(60_500))
        #expect(cache.count == 500)
    }

    @Test("the generator is injectable, so tokens are reproducible in tests")
    func injectedGenerator() throws {
        var cache = TokenCache<Int>()
        var generator = FixedGenerator()
        let token = try cache.insert(1, kind: .portForward, now: self.start, using: &generator)
        #expect(token.rawValue == "AAAAAAAAAAAAAAAAAAAAAA")
    }

    struct FixedGenerator: RandomNumberGenerator {
        mutating func next() -> UInt64 { 0 }
    }
}
