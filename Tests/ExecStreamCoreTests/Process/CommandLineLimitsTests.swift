import ExecStreamCore
import NIOCore
import Testing

@Suite("Command-line limits")
struct CommandLineLimitsTests {
    @Test("a command the kernel would take passes")
    func ordinaryCommand() throws {
        try CommandLineLimits().validate(arguments: ["sh", "-c", String(repeating: "x", count: 131_071)], environment: ["PATH=/bin"])
    }

    @Test("one argument over the kernel's MAX_ARG_STRLEN is refused with its position and size, not its text")
    func oversizedArgument() {
        let error = #expect(throws: ExecStreamError.self) {
            try CommandLineLimits().validate(arguments: ["echo", String(repeating: "y", count: 200_000)], environment: [])
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message == "argument 1 is 200000 bytes; at most 131071 are allowed")
    }

    @Test("an oversized environment entry, or too much in all, is refused")
    func oversizedEnvironmentAndTotal() {
        let entry = #expect(throws: ExecStreamError.self) {
            try CommandLineLimits().validate(arguments: ["true"], environment: ["A=" + String(repeating: "z", count: 131_070)])
        }
        #expect(entry?.message == "environment entry 0 is 131072 bytes; at most 131071 are allowed")
        let total = #expect(throws: ExecStreamError.self) {
            try CommandLineLimits().validate(arguments: Array(repeating: String(repeating: "a", count: 100_000), count: 11), environment: [])
        }
        #expect(total?.code == .invalidArgument)
        #expect(total?.message.hasPrefix("the command's arguments and environment take 1100") == true)
    }

    @Test("a NUL byte inside an argument is refused: execve would cut it short")
    func embeddedNUL() {
        #expect(throws: ExecStreamError(code: .invalidArgument, message: "argument 1 contains a NUL byte")) {
            try CommandLineLimits().validate(arguments: ["echo", "a\0b"], environment: [])
        }
    }

    @Test("a command word in a message is cut at a character")
    func displayed() {
        #expect(CommandLineLimits.displayed("sh") == "sh")
        let long = String(repeating: "é", count: 100)  // 200 bytes
        let shown = CommandLineLimits.displayed(long)
        #expect(shown == String(repeating: "é", count: 64) + "…")
    }
}

@Suite("ExecSync output budget")
struct ExecSyncOutputBudgetTests {
    @Test("outputs that fit together are left whole")
    func fits() {
        #expect(ExecSyncOutputBudget.limits(stdout: 10, stderr: 20, maxMessageBytes: 100) == (10, 20))
    }

    @Test("the smaller output keeps what it has up to half; the larger takes the rest")
    func split() {
        let budget = ExecSyncOutputBudget.outputBytes(maxMessageBytes: 1032)  // 1000
        #expect(budget == 1000)
        #expect(ExecSyncOutputBudget.limits(stdout: 900, stderr: 300, maxMessageBytes: 1032) == (700, 300))
        #expect(ExecSyncOutputBudget.limits(stdout: 10, stderr: 5000, maxMessageBytes: 1032) == (10, 990))
        #expect(ExecSyncOutputBudget.limits(stdout: 900, stderr: 900, maxMessageBytes: 1032) == (500, 500))
    }

    @Test("16 MiB of stdout from a 16 MiB capture fits a 16 MiB message with its notice")
    func defaultLimits() {
        let maxMessage = 16 << 20
        var capture = BoundedOutputCapture(streamName: "stdout", limit: ExecSyncOutputBudget.outputBytes(maxMessageBytes: maxMessage))
        capture.append(ByteBuffer(repeating: 0x61, count: 17 << 20))
        let limits = ExecSyncOutputBudget.limits(stdout: capture.result().bytes.readableBytes, stderr: 0, maxMessageBytes: maxMessage)
        let (bytes, dropped) = capture.result(limit: limits.stdout)
        #expect(bytes.readableBytes + ExecSyncOutputBudget.responseOverheadBytes <= maxMessage)
        #expect(dropped > 1 << 20)
        #expect(String(buffer: bytes).hasSuffix("[execstream: stdout truncated: \(dropped) bytes dropped]\n"))
    }
}
