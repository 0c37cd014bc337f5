import ExecStreamClient
import ExecStreamCore
import ExecStreamProtos
import NIOCore
import Synchronization
import Testing

@Suite("Console over an exec with stdin credit (in-process server)", .timeLimit(.minutes(1)))
struct ConsoleEndToEndTests {
    /// An exec of `command` in the demo container, on a terminal or not, with stdin credit.
    func creditedExec(_ server: InProcessServer, _ command: [String], tty: Bool) async throws -> CreditedExecClient {
        let request = Runtime_V1_ExecRequest.with {
            $0.containerID = "demo"
            $0.cmd = command
            $0.tty = tty
            $0.stdin = true
            $0.stdout = true
        }
        return try await CreditedExecClient.open(request, client: server.client)
    }

    @Test("stdinTaken returns once the process's stdin channel has every byte, beyond the first window")
    func stdinTakenCoversEverything() async throws {
        try await InProcessServer.with { server in
            let exec = try await self.creditedExec(server, ["wc", "-c"], tty: false)
            let output = OutputCollector()
            async let result = exec.run(output: { _, bytes in output.append(bytes) })
            // 640 KiB: more than two windows, so credit must come back for the rest to go.
            for _ in 0..<20 {
                await exec.sendStdin(ByteBuffer(repeating: 0x61, count: 32 << 10))
            }
            #expect(await exec.stdinTaken() == .taken)
            exec.closeStdin()
            #expect(try await result == RemoteCommandResult(exitCode: 0, message: ""))
            #expect(output.text.trimmingCharacters(in: .whitespacesAndNewlines) == "655360")
        }
    }

    @Test("a process that reads nothing: stdin is taken up to the channel's watermark, then the deadline answers")
    func stdinTakenTimesOut() async throws {
        try await InProcessServer.with { server in
            let exec = try await self.creditedExec(server, ["sleep", "600"], tty: false)
            let runner = Task { try await exec.run(output: { _, _ in }) }
            defer { runner.cancel() }
            // 2 MiB: more than the pipe, the stdin window and the channel's 1 MiB watermark hold.
            for _ in 0..<64 {
                await exec.sendStdin(ByteBuffer(repeating: 0x61, count: 32 << 10))
            }
            #expect(await exec.stdinTaken(before: .now + .milliseconds(500)) == .timedOut)
        }
    }

    @Test("typing into a console whose process has gone ends in an `ended` failure, not a hang")
    func typingAfterTheEnd() async throws {
        try await InProcessServer.with { server in
            let exec = try await self.creditedExec(server, ["true"], tty: true)
            let console = try ConsoleSession(terminal: exec)
            console.start()
            defer { console.close() }
            let chunk = [UInt8](repeating: 0x78, count: ConsoleSession.maxTypedChunk)
            var failure: ConsoleSession.Failure?
            // The stream ends once `true` has exited; from then on nothing typed is taken.
            for _ in 0..<100_000 where failure == nil {
                do throws(ConsoleSession.Failure) {
                    try await console.send(chunk)
                } catch {
                    failure = error
                }
            }
            #expect(failure?.code == .ended)
        }
    }

    @Test("a console on a shell started by exec runs commands between fences, exactly")
    func consoleOverExec() async throws {
        try await InProcessServer.with { server in
            let exec = try await self.creditedExec(server, ["sh", "-i"], tty: true)
            let console = try ConsoleSession(terminal: exec)
            console.start()
            defer { console.close() }
            let first = try await console.run("echo hi; printf 'ESE_%s:0\\n' fake", timeout: .seconds(30))
            #expect(String(decoding: first.output, as: UTF8.self) == "hi\r\nESE_fake:0\r\n")
            #expect(first.exitStatus == 0)
            let second = try await console.run("printf x; false", timeout: .seconds(30))
            #expect(String(decoding: second.output, as: UTF8.self) == "x")
            #expect(second.exitStatus == 1)
            // A line the command reads, typed once it has started.
            let third = try await console.run("read line; echo \"[$line]\"", input: Array("typed\n".utf8), timeout: .seconds(30))
            #expect(String(decoding: third.output, as: UTF8.self).hasSuffix("[typed]\r\n"))
        }
    }
}

/// Output gathered from a stream's callback.
final class OutputCollector: Sendable {
    private let bytes = Mutex(ByteBuffer())

    func append(_ buffer: ByteBuffer) {
        self.bytes.withLock { _ = $0.writeImmutableBuffer(buffer) }
    }

    var text: String { self.bytes.withLock { String(buffer: $0) } }
}
