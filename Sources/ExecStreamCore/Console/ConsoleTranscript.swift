// # What a console has printed and no expectation has taken yet
//
//   output ──append──▶ [ taken │ pending ................................ ]
//                                 └── expect(pattern): the first match in pending;
//                                     everything up to its end is taken, the rest stays
//
// Output goes in as it arrives, in whatever pieces the transport made. An expectation takes the
// bytes up to the end of the first match and leaves the rest for the next one, so no byte is
// matched twice and none is skipped. Matching sees the pending bytes as text: invalid UTF-8
// bytes are seen as "?" (one byte each, so positions stay exact), and an incomplete sequence at
// the end waits for its remaining bytes.

/// What a console has printed and no expectation has taken yet (see the diagram above).
public struct ConsoleTranscript: Sendable {
    /// What an expectation looks for.
    public enum Pattern: Sendable, Hashable, CustomStringConvertible {
        /// These exact characters.
        case literal(String)
        /// A regular expression (Swift `Regex` syntax, which is PCRE-like), matched Unicode scalar
        /// by scalar (so `\r\n` is two characters, as everywhere else).
        case regularExpression(String)

        public var description: String {
            switch self {
            case .literal(let text): return JSONWriter.quoted(text)
            case .regularExpression(let pattern): return "/\(pattern)/"
            }
        }
    }

    /// A pattern that is not a valid regular expression.
    public struct InvalidPattern: Error, Hashable, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// What an expectation took.
    public struct Match: Hashable, Sendable {
        /// The bytes before the match.
        public var before: [UInt8]
        /// The matched bytes.
        public var matched: [UInt8]

        public init(before: [UInt8], matched: [UInt8]) {
            self.before = before
            self.matched = matched
        }
    }

    private var pending: [UInt8] = []

    public init() {}

    /// Bytes printed and not yet taken.
    public var pendingBytes: [UInt8] { self.pending }

    /// Output, as it arrived.
    public mutating func append<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        self.pending.append(contentsOf: bytes)
    }

    /// Takes everything up to the end of the first match of `pattern`, if there is one; the rest
    /// stays pending. (To wait for a pattern as output arrives, keep a `Search` instead.)
    public mutating func take(through pattern: Pattern) throws(InvalidPattern) -> Match? {
        var search = try Search(pattern)
        return self.take(&search)
    }

    /// Whether `pattern` matches in what is pending (nothing is taken).
    public func contains(_ pattern: Pattern) throws(InvalidPattern) -> Bool {
        var search = try Search(pattern)
        return search.firstMatch(in: self) != nil
    }

    /// How many bytes are pending.
    public var pendingCount: Int { self.pending.count }

    /// Where `needle` first starts in the pending bytes at or after `start`, without copying them.
    func firstIndex(of needle: [UInt8], from start: Int) -> Int? {
        guard let first = needle.first, self.pending.count - start >= needle.count else { return nil }
        return self.pending.withUnsafeBufferPointer { bytes -> Int? in
            var index = max(start, 0)
            let last = bytes.count - needle.count
            while index <= last {
                if bytes[index] == first {
                    var matched = 1
                    while matched < needle.count && bytes[index + matched] == needle[matched] { matched += 1 }
                    if matched == needle.count { return index }
                }
                index += 1
            }
            return nil
        }
    }

    /// The pending bytes in `range`.
    func bytes(_ range: Range<Int>) -> [UInt8] {
        Array(self.pending[range])
    }

    /// The pending byte at `index`, nil past the end.
    func byte(at index: Int) -> UInt8? {
        index >= 0 && index < self.pending.count ? self.pending[index] : nil
    }

    /// Drops the first `count` pending bytes: what a step took, or what it took from a copy of
    /// this transcript that was searched while output went on arriving here.
    public mutating func discard(upTo count: Int) {
        self.pending.removeFirst(count)
    }

    /// Takes everything pending.
    public mutating func takeAll() -> [UInt8] {
        defer { self.pending = [] }
        return self.pending
    }

    /// The last `maxBytes` pending bytes as text, for an error that says what was seen.
    public func tail(maxBytes: Int = 512) -> String {
        let bytes = self.pending.suffix(maxBytes)
        return String(decoding: Self.visible(Array(bytes)).text, as: UTF8.self)
    }

    /// Checks that `pattern` can be used (a regular expression that compiles).
    public static func validate(_ pattern: Pattern) throws(InvalidPattern) {
        _ = try Search(pattern)
    }

    // MARK: Matching

    /// `bytes` as valid UTF-8 of the same length: each byte of an invalid sequence becomes "?";
    /// an incomplete sequence at the end is left out (it may complete later). Returns the text
    /// and how many bytes of `bytes` it covers.
    static func visible(_ bytes: [UInt8]) -> (text: [UInt8], complete: Int) {
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let lead = bytes[index]
            let length: Int
            switch lead {
            case 0x00...0x7F: length = 1
            case 0xC2...0xDF: length = 2
            case 0xE0...0xEF: length = 3
            case 0xF0...0xF4: length = 4
            default: length = 0
            }
            guard length > 0 else {
                text.append(UInt8(ascii: "?"))
                index += 1
                continue
            }
            guard index + length <= bytes.count else {
                // Incomplete at the end: valid so far, it waits; invalid already, it is "?".
                if Self.isValidPrefix(bytes[index...]) { return (text, index) }
                text.append(UInt8(ascii: "?"))
                index += 1
                continue
            }
            let sequence = Array(bytes[index..<(index + length)])
            if length == 1 || String(validating: sequence, as: UTF8.self) != nil {
                text += sequence
                index += length
            } else {
                text.append(UInt8(ascii: "?"))
                index += 1
            }
        }
        return (text, index)
    }

    private static func isValidPrefix(_ bytes: ArraySlice<UInt8>) -> Bool {
        guard let lead = bytes.first else { return true }
        let rest = bytes.dropFirst()
        guard rest.allSatisfy({ $0 & 0xC0 == 0x80 }) else { return false }
        switch lead {
        case 0xE0: return rest.first.map { $0 >= 0xA0 } ?? true
        case 0xED: return rest.first.map { $0 <= 0x9F } ?? true
        case 0xF0: return rest.first.map { $0 >= 0x90 } ?? true
        case 0xF4: return rest.first.map { $0 <= 0x8F } ?? true
        default: return true
        }
    }
}
