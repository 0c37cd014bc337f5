import ExecStreamCore
import Testing

@Suite("Console transcript: each byte taken once, in order")
struct ConsoleTranscriptTests {
    @Test("a match takes up to its end and leaves the rest for the next")
    func takesThroughTheMatch() throws {
        var transcript = ConsoleTranscript()
        transcript.append(Array("login: root\r\n$ ".utf8))
        #expect(try transcript.take(through: .literal("$ ")) == .init(before: Array("login: root\r\n".utf8), matched: Array("$ ".utf8)))
        #expect(transcript.pendingBytes.isEmpty)
        transcript.append(Array("one\r\ntwo\r\n".utf8))
        #expect(try transcript.take(through: .regularExpression("t[a-z]+")) == .init(before: Array("one\r\n".utf8), matched: Array("two".utf8)))
        #expect(transcript.pendingBytes == Array("\r\n".utf8))
        #expect(try transcript.take(through: .literal("two")) == nil, "a byte is never matched twice")
    }

    @Test("a pattern split across arrivals matches once it is whole")
    func splitArrivals() throws {
        var transcript = ConsoleTranscript()
        transcript.append(Array("rea".utf8))
        #expect(try transcript.take(through: .literal("ready")) == nil)
        transcript.append(Array("dy!".utf8))
        #expect(try transcript.take(through: .literal("ready"))?.matched == Array("ready".utf8))
        #expect(transcript.pendingBytes == Array("!".utf8))
    }

    @Test("invalid UTF-8 keeps its place; an incomplete character waits for the rest")
    func bytesThatAreNotText() throws {
        var transcript = ConsoleTranscript()
        transcript.append([0x66, 0xFF, 0x6F, 0x6F, 0xE2, 0x82])  // f, invalid, o, o, 2 of €'s 3 bytes
        #expect(try transcript.take(through: .regularExpression("o+")) == .init(before: [0x66, 0xFF], matched: [0x6F, 0x6F]))
        #expect(try transcript.take(through: .regularExpression("€")) == nil)
        transcript.append([0xAC, 0x21])
        #expect(try transcript.take(through: .regularExpression("€")) == .init(before: [], matched: [0xE2, 0x82, 0xAC]))
        #expect(transcript.tail() == "!")
    }

    @Test("a regular expression that does not compile is an error that names it")
    func invalidPattern() {
        #expect(throws: ConsoleTranscript.InvalidPattern.self) { try ConsoleTranscript.validate(.regularExpression("(unclosed")) }
        #expect(throws: Never.self) { try ConsoleTranscript.validate(.regularExpression("^\\$ $")) }
    }

    /// A stream is matched as it arrives: a pattern that could match more (`€+`) matches what
    /// is there when it first matches, as in any expect. What a kept search must give is what a
    /// fresh search of everything pending would give at each arrival.
    @Test("a search kept across arrivals gives what a fresh search gives at each arrival, however the bytes come", arguments: [
        ConsoleTranscript.Pattern.literal("ready"), .literal("aab"), .literal("€!"), .literal("$ "),
        .regularExpression("got \\[(\\w+)\\]"), .regularExpression("(?m)^\\$ "), .regularExpression("a+b"), .regularExpression("€+"),
        .regularExpression("\\r\\n[0-9]{3}\\r\\n"),
    ])
    func searchAcrossArrivals(pattern: ConsoleTranscript.Pattern) throws {
        var random = SplitMix64(seed: 2026_11_25)
        let pieces: [[UInt8]] = [
            Array("rea".utf8), Array("ready".utf8), Array("aaab".utf8), Array("got [x1]".utf8), Array("$ ".utf8), Array("\r\n".utf8),
            Array("123".utf8), Array("€".utf8), [0xFF], [0xE2, 0x82], Array("!".utf8), Array("a".utf8), Array("b".utf8),
            Array("€!".utf8), Array("\r\n123\r\n".utf8), Array("\r\n$ ".utf8),
        ]
        var matches = 0
        for _ in 0..<300 {
            var screen: [UInt8] = []
            for _ in 0..<Int(random.next() % 12) {
                screen += pieces[Int(random.next() % UInt64(pieces.count))]
            }
            var kept = ConsoleTranscript()
            var fresh = ConsoleTranscript()
            var search = try ConsoleTranscript.Search(pattern)
            var offset = 0
            while offset < screen.count {
                let piece = screen[offset..<min(screen.count, offset + 1 + Int(random.next() % 5))]
                offset += piece.count
                kept.append(piece)
                fresh.append(piece)
                let expected = try fresh.take(through: pattern)
                #expect(kept.take(&search) == expected, "\(pattern) in \(screen)")
                #expect(kept.pendingBytes == fresh.pendingBytes)
                matches += expected == nil ? 0 : 1
            }
        }
        #expect(matches > 20, "the cases match often enough to mean something")
    }

    @Test("the tail is the last bytes seen, as text")
    func tail() {
        var transcript = ConsoleTranscript()
        transcript.append(Array(String(repeating: "x", count: 1000).utf8) + Array("the end".utf8))
        #expect(transcript.tail(maxBytes: 7) == "the end")
        #expect(transcript.tail().utf8.count == 512)
    }
}

@Suite("Console command fence: output between two fences the echo can never match")
struct ConsoleCommandFenceTests {
    let fence = ConsoleCommandFence(nonce: "0123abcd")

    /// What a terminal shows for `fence.input(for: command)`: the prompt, the echo of both typed
    /// lines (with a continuation prompt), then what ran.
    func screen(_ command: String, output: String, status: Int, prompt: String = "$ ") -> [UInt8] {
        let echo = self.fence.input(for: command).replacingOccurrences(of: "\n", with: "\r\n> ", options: [], range: nil)
        return Array((prompt + echo + "ESB_0123abcd\r\n" + output + "\r\nESE_0123abcd:\(status)\r\n" + prompt).utf8)
    }

    @Test("the input is the command in braces between the printfs, the fences' parts apart")
    func input() {
        #expect(self.fence.input(for: "ls /") == "printf '%s%s\\n' ESB_ 0123abcd; { ls /\n}; printf '\\n%s%s:%s\\n' ESE_ 0123abcd \"$?\"\n")
        #expect(!self.fence.input(for: "ls /").contains("ESB_0123abcd") && !self.fence.input(for: "ls /").contains("ESE_0123abcd"))
    }

    @Test("output and status come back exactly; the next prompt stays", arguments: [
        ("hello\r\nworld\r\n", 0),
        ("no final newline", 1),
        ("", 0),
        ("\r\n\r\n", 7),
        ("ESB_0123abcd without its newline, ESE_ffffffff:0\r\nESE_0123abcd:9 inline\r\n", 3),
    ])
    func fenced(output: String, status: Int) {
        var transcript = ConsoleTranscript()
        transcript.append(self.screen("cmd", output: output, status: status))
        let result = self.fence.take(from: &transcript)
        #expect(result == .init(output: Array(output.utf8), exitStatus: status))
        #expect(transcript.pendingBytes == Array("$ ".utf8))
    }

    @Test("nothing is taken until both fences are in, whatever the pieces")
    func pieces() {
        let screen = self.screen("printf x", output: "x", status: 0)
        for split in 1..<screen.count {
            var transcript = ConsoleTranscript()
            transcript.append(screen[..<split])
            if let early = self.fence.take(from: &transcript) {
                // Only once the whole end fence (its final newline too) is in; the prompt stays.
                #expect(split >= screen.count - 2 && early.output == Array("x".utf8))
                transcript.append(screen[split...])
                #expect(transcript.pendingBytes == Array("$ ".utf8))
                continue
            }
            #expect(transcript.pendingBytes == Array(screen[..<split]))
            transcript.append(screen[split...])
            #expect(self.fence.take(from: &transcript) == .init(output: Array("x".utf8), exitStatus: 0))
        }
    }

    @Test("searched as bytes arrive, each once: the same answer as a search of everything", arguments: [
        ("hello\r\nworld\r\n", 0), ("no final newline", 1), ("", 0), ("\r\n\r\n", 7),
        ("ESB_0123abcd without its newline, ESE_ffffffff:0\r\nESE_0123abcd:9 inline\r\nESE_0123abcd:\r\n", 3),
    ])
    func incremental(output: String, status: Int) {
        let screen = self.screen("cmd", output: output, status: status)
        var transcript = ConsoleTranscript()
        var scan = ConsoleCommandFence.Scan()
        var result: ConsoleCommandFence.Result?
        for byte in screen {
            transcript.append([byte])
            if result == nil {
                result = self.fence.take(from: &transcript, scan: &scan)
            }
        }
        #expect(result == .init(output: Array(output.utf8), exitStatus: status))
        #expect(transcript.pendingBytes == Array("$ ".utf8))
    }

    @Test("random fences differ, and are letters and digits")
    func random() {
        let nonces = Set((0..<100).map { _ in ConsoleCommandFence.random().nonce })
        #expect(nonces.count == 100)
        #expect(nonces.allSatisfy { $0.count == 16 && $0.allSatisfy(\.isHexDigit) })
    }
}

