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

    /// The start fence as printed.
    public var startPattern: ConsoleTranscript.Pattern {
        .regularExpression("ESB_\(self.nonce)\\r?\\n")
    }

    /// The end fence as printed, with the newline before it.
    public var endPattern: ConsoleTranscript.Pattern {
        .regularExpression("\\r?\\nESE_\(self.nonce):([0-9]+)\\r?\\n")
    }

    /// Takes the command's fenced output from `transcript` once both fences are in it; nil while
    /// they are not (nothing is taken then).
    public func take(from transcript: inout ConsoleTranscript) -> Result? {
        let pending = transcript.pendingBytes
        guard
            let start = try? ConsoleTranscript.firstMatch(of: self.startPattern, in: pending),
            let endRange = try? ConsoleTranscript.firstMatch(of: self.endPattern, in: Array(pending[start.upperBound...]))
        else { return nil }
        let end = (start.upperBound + endRange.lowerBound)..<(start.upperBound + endRange.upperBound)
        let output = Array(pending[start.upperBound..<end.lowerBound])
        let fence = String(decoding: pending[end], as: UTF8.self)
        let digits = fence.split(separator: ":").last.map { $0.filter(\.isNumber) } ?? ""
        transcript.discard(upTo: end.upperBound)
        return Result(output: output, exitStatus: Int(digits) ?? -1)
    }
}
