import ExecStreamCore

/// What a console prints, as `ConsoleSession` reads it: a terminal's output is whatever the
/// container's programs write (any bytes, invalid UTF-8, text that looks like a fence or a
/// prompt), split anywhere by the transport. The fence and the kept searches must answer the same
/// whatever the pieces: a fence as it would for everything at once, a kept search as a fresh
/// search would at each arrival.
enum ConsoleOutputFuzzing {
    /// The nonce the seeds' fences use.
    static let fence = ConsoleCommandFence(nonce: "0123abcd")
    static let patterns: [ConsoleTranscript.Pattern] = [
        .literal("ESE_"), .literal("$ "), .regularExpression("(?m)^\\$ "), .regularExpression("[0-9]+\\r?\\n"),
        .regularExpression("got \\[(\\w*)\\]"),
    ]

    static func output(_ bytes: [UInt8]) {
        let pieces = StreamSplitting.pieces(of: bytes)
        self.fenceAnswersAlike(bytes, pieces)
        for pattern in self.patterns {
            self.keptSearchAnswersAsFresh(pattern, pieces)
        }
    }

    private static func fenceAnswersAlike(_ bytes: [UInt8], _ pieces: [ArraySlice<UInt8>]) {
        var whole = ConsoleTranscript()
        whole.append(bytes)
        let expected = self.fence.take(from: &whole)

        var transcript = ConsoleTranscript()
        var scan = ConsoleCommandFence.Scan()
        var result: ConsoleCommandFence.Result?
        for piece in pieces {
            transcript.append(piece)
            if result == nil {
                result = self.fence.take(from: &transcript, scan: &scan)
            }
        }
        precondition(result == expected, "a fence read in pieces answered differently from the same output whole")
        precondition(transcript.pendingBytes == whole.pendingBytes, "a fence read in pieces left different bytes pending")
    }

    private static func keptSearchAnswersAsFresh(_ pattern: ConsoleTranscript.Pattern, _ pieces: [ArraySlice<UInt8>]) {
        guard var search = try? ConsoleTranscript.Search(pattern) else { preconditionFailure("the patterns compile") }
        var kept = ConsoleTranscript()
        var fresh = ConsoleTranscript()
        for piece in pieces {
            kept.append(piece)
            fresh.append(piece)
            let expected = try? fresh.take(through: pattern)
            precondition(kept.take(&search) == expected, "a kept search answered differently from a fresh one")
            precondition(kept.pendingBytes == fresh.pendingBytes, "a kept search took different bytes")
        }
    }
}
