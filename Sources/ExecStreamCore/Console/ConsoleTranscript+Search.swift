extension ConsoleTranscript {
    /// One expectation's search, kept from one arrival of output to the next, so that each
    /// arrival costs what it must and no more:
    /// - a literal looks at each pending byte once (the next search starts where a match could
    ///   still begin);
    /// - a regular expression is compiled once, and the pending bytes are decoded to text once;
    ///   it is then searched from the start of what is pending at each arrival, because a match
    ///   may begin anywhere before the new bytes (as pexpect and expect do).
    ///
    /// A search belongs to one transcript, and only appends may happen to it between searches.
    public struct Search: Sendable {
        private enum Matcher: @unchecked Sendable {
            case literal([UInt8])
            case regularExpression(Regex<AnyRegexOutput>)
        }

        /// What is searched for.
        public let pattern: Pattern
        private let matcher: Matcher
        /// Literal: the offset in the pending bytes where the next search starts.
        private var resumeAt = 0
        /// Regular expression: the pending bytes decoded so far (`visibleByteCount` of them; an
        /// incomplete character at the end waits).
        private var visibleText = ""
        private var visibleByteCount = 0

        /// A search for `pattern`; throws if it is a regular expression that does not compile.
        public init(_ pattern: Pattern) throws(InvalidPattern) {
            self.pattern = pattern
            switch pattern {
            case .literal(let text):
                self.matcher = .literal(Array(text.utf8))
            case .regularExpression(let source):
                do {
                    // Scalar by scalar, not grapheme by grapheme: a terminal's "\r\n" is two
                    // characters to match, as in every other regular expression engine.
                    self.matcher = .regularExpression(try Regex(source).matchingSemantics(.unicodeScalar))
                } catch {
                    throw InvalidPattern(description: "invalid regular expression /\(source)/: \(error)")
                }
            }
        }

        /// The byte range of the first match in `transcript`'s pending bytes, if there is one
        /// yet.
        mutating func firstMatch(in transcript: ConsoleTranscript) -> Range<Int>? {
            switch self.matcher {
            case .literal(let needle):
                guard !needle.isEmpty else { return 0..<0 }
                guard let start = transcript.firstIndex(of: needle, from: self.resumeAt) else {
                    // A match could still begin in the last needle.count - 1 bytes.
                    self.resumeAt = max(self.resumeAt, transcript.pendingCount - needle.count + 1)
                    return nil
                }
                return start..<(start + needle.count)
            case .regularExpression(let regex):
                if transcript.pendingCount > self.visibleByteCount {
                    let (text, complete) = ConsoleTranscript.visible(transcript.bytes(self.visibleByteCount..<transcript.pendingCount))
                    self.visibleText += String(decoding: text, as: UTF8.self)
                    self.visibleByteCount += complete
                }
                let string = self.visibleText
                guard let match = string.firstMatch(of: regex) else { return nil }
                // The text is the pending bytes byte for byte (invalid bytes became "?").
                return string.utf8.distance(from: string.startIndex, to: match.range.lowerBound)
                    ..< string.utf8.distance(from: string.startIndex, to: match.range.upperBound)
            }
        }

        /// The transcript's pending bytes start afresh (everything up to a match was taken).
        mutating func restart() {
            self.resumeAt = 0
            self.visibleText = ""
            self.visibleByteCount = 0
        }
    }

    /// Takes everything up to the end of `search`'s first match, if there is one yet; the rest
    /// stays pending. Call it again with the same search as output arrives.
    public mutating func take(_ search: inout Search) -> Match? {
        guard let range = search.firstMatch(in: self) else { return nil }
        let match = Match(before: self.bytes(0..<range.lowerBound), matched: self.bytes(range))
        self.discard(upTo: range.upperBound)
        search.restart()
        return match
    }
}
