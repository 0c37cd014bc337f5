// # Running one command on a console, fenced
//
//   typed:   printf '%s%s\n' ESB_ <nonce>; { COMMAND⏎ }; printf '\n%s%s:%s\n' ESE_ <nonce> "$?"⏎
//   printed: …prompt, the echo of that line… ESB_<nonce>⏎ OUTPUT ⏎ESE_<nonce>:STATUS⏎ prompt…
//                                          └ start fence ┘        └──── end fence ────┘
//
// Each fence is printed by printf from two parts, so the terminal's echo of the typed line
// (where the parts stand apart, quoted) can never match it, and the nonce is fresh for every
// command, so output that looks like a fence (another nonce) never matches either. What lies
// between the fences is the command's output, byte for byte: the end fence begins with one
// newline of its own, which is taken off, so output without a final newline comes back without
// one. The exit status is the shell's `$?` right after the command. Everything before the start
// fence (a prompt, the echo, a kernel message) is not the command's and is dropped; whatever
// follows the end fence (the next prompt) stays for the next step.

/// One command run on a console between two fences (see the diagram above).
public struct ConsoleCommandFence: Sendable, Hashable {
    /// What the fenced command printed and how it exited.
    public struct Result: Hashable, Sendable {
        /// The output between the fences, as the terminal printed it (a terminal turns "\n"
        /// into "\r\n").
        public var output: [UInt8]
        /// The shell's `$?` after the command.
        public var exitStatus: Int

        public init(output: [UInt8], exitStatus: Int) {
            self.output = output
            self.exitStatus = exitStatus
        }
    }

    /// Fresh for every command.
    public let nonce: String

    /// A fence for one command; `nonce` must be letters and digits only (16 random hex digits
    /// are plenty).
    public init(nonce: String) {
        precondition(!nonce.isEmpty && nonce.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }, "a nonce is letters and digits")
        self.nonce = nonce
    }

    /// A fence with a random 64-bit nonce.
    public static func random() -> ConsoleCommandFence {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        let hex = String(value, radix: 16)
        return ConsoleCommandFence(nonce: String(repeating: "0", count: 16 - hex.count) + hex)
    }

    /// What to type: `command` in braces between the two printfs, so it may end in `&` or `;`,
    /// or with a comment. The shell parses all of it before it runs any of it, so a command that
    /// reads a line of stdin reads the next line typed, never the end fence.
    public func input(for command: String) -> String {
        "printf '%s%s\\n' ESB_ \(self.nonce); { \(command)\n}; printf '\\n%s%s:%s\\n' ESE_ \(self.nonce) \"$?\"\n"
    }

    /// The start fence as printed (for a script's own `expect`).
    public var startPattern: ConsoleTranscript.Pattern {
        .regularExpression("ESB_\(self.nonce)\\r?\\n")
    }

    /// How far the search for the fences has got in a transcript that only grows while the
    /// command runs (nothing else takes from it then), so each byte that arrives is searched once,
    /// not the whole output again at every arrival: a command printing megabytes stays linear.
    public struct Scan: Sendable, Hashable {
        /// Pending bytes before this offset hold no start fence.
        var startSearchedUpTo = 0
        /// Where the output begins, once the start fence is found.
        var outputStart: Int?
        /// Pending bytes from `outputStart` to this offset hold no end fence.
        var endSearchedUpTo = 0

        public init() {}
    }

    /// Whether the start fence has been seen (the command has started).
    public func hasStarted(in transcript: ConsoleTranscript, scan: inout Scan) -> Bool {
        self.findStart(in: transcript, scan: &scan) != nil
    }

    /// Takes the command's fenced output from `transcript` once both fences are in it; nil while
    /// they are not (nothing is taken then).
    public func take(from transcript: inout ConsoleTranscript) -> Result? {
        var scan = Scan()
        return self.take(from: &transcript, scan: &scan)
    }

    /// `take(from:)`, searching only what arrived since the last call with the same `scan`.
    public func take(from transcript: inout ConsoleTranscript, scan: inout Scan) -> Result? {
        guard let outputStart = self.findStart(in: transcript, scan: &scan) else { return nil }
        let needle = Array("ESE_\(self.nonce):".utf8)
        // The end fence begins with a newline of its own: the output ends before it.
        var from = max(scan.endSearchedUpTo, outputStart + 1)
        while let fence = transcript.firstIndex(of: needle, from: from) {
            from = fence + 1
            guard transcript.byte(at: fence - 1) == UInt8(ascii: "\n") else { continue }
            var outputEnd = fence - 1
            if outputEnd > outputStart, transcript.byte(at: outputEnd - 1) == UInt8(ascii: "\r") {
                outputEnd -= 1
            }
            var index = fence + needle.count
            var status = 0
            var digits = 0
            while let byte = transcript.byte(at: index), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                status = status &* 10 &+ Int(byte - UInt8(ascii: "0"))
                digits += 1
                index += 1
            }
            if transcript.byte(at: index) == UInt8(ascii: "\r") {
                index += 1
            }
            guard let newline = transcript.byte(at: index) else {
                // The fence is not all in yet: search from it again next time.
                scan.endSearchedUpTo = fence
                return nil
            }
            guard newline == UInt8(ascii: "\n"), digits > 0 else { continue }
            let output = transcript.bytes(outputStart..<outputEnd)
            transcript.discard(upTo: index + 1)
            scan = Scan()
            return Result(output: output, exitStatus: status)
        }
        scan.endSearchedUpTo = max(outputStart + 1, transcript.pendingCount - needle.count)
        return nil
    }

    /// Where the output begins (after the start fence's line), once the start fence is in.
    private func findStart(in transcript: ConsoleTranscript, scan: inout Scan) -> Int? {
        if let start = scan.outputStart { return start }
        let needle = Array("ESB_\(self.nonce)".utf8)
        var from = scan.startSearchedUpTo
        while let fence = transcript.firstIndex(of: needle, from: from) {
            var index = fence + needle.count
            if transcript.byte(at: index) == UInt8(ascii: "\r") {
                index += 1
            }
            guard let newline = transcript.byte(at: index) else {
                scan.startSearchedUpTo = fence
                return nil
            }
            guard newline == UInt8(ascii: "\n") else {
                from = fence + 1
                continue
            }
            scan.outputStart = index + 1
            scan.endSearchedUpTo = index + 1
            return index + 1
        }
        scan.startSearchedUpTo = max(0, transcript.pendingCount - needle.count)
        return nil
    }
}
