import ExecStreamClient
import ExecStreamCore
import ExecStreamHTTP2
import ExecStreamProtos
import ExecStreamServer
import NIOCore
import Testing

@Suite("Exec end to end (in-process server, native HTTP/2)")
struct ExecEndToEndTests {
    @Test("echo comes back byte for byte, with exit code 0")
    func echo() async throws {
        try await InProcessServer.with { server in
            let output = try await server.exec(["echo", "hi"])
            #expect(output.stdoutText == "hi\n")
            #expect(output.stderr.readableBytes == 0)
            #expect(output.result == RemoteCommandResult(exitCode: 0, message: ""))
            server.expectNoLiveChannels()
        }
    }

    @Test("stdout and stderr stay apart")
    func stdoutAndStderr() async throws {
        try await InProcessServer.with { server in
            let output = try await server.exec(["sh", "-c", "echo out; echo err >&2; echo out2"])
            #expect(output.stdoutText == "out\nout2\n")
            #expect(String(buffer: output.stderr) == "err\n")
        }
    }

    @Test("exit codes come back as the command's", arguments: [0, 1, 42, 255])
    func exitCodes(code: Int) async throws {
        try await InProcessServer.with { server in
            let output = try await server.exec(["sh", "-c", "exit \(code)"])
            #expect(output.result.exitCode == UInt8(code))
            if code != 0 {
                #expect(output.result.message == "command terminated with non-zero exit code: exit status \(code)")
            }
        }
    }

    @Test("death by signal n is 128+n")
    func deathBySignal() async throws {
        try await InProcessServer.with { server in
            let output = try await server.exec(["sh", "-c", "kill -KILL $$"])
            #expect(output.result.exitCode == 137)
        }
    }

    @Test("stdin goes in byte for byte, and its end is end of file")
    func stdinRoundTrip() async throws {
        try await InProcessServer.with { server in
            let input = ByteBuffer(bytes: (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            let output = try await server.exec(["cat"], stdin: input)
            #expect(output.stdout == input)
            #expect(output.result.exitCode == 0)
            server.expectNoLiveChannels()
        }
    }

    @Test("a terminal gets its initial size before the command runs")
    func terminalSize() async throws {
        try await InProcessServer.with { server in
            let output = try await server.exec(["stty", "size"], tty: true, terminalSize: TerminalSize(width: 132, height: 43))
            #expect(output.stdoutText == "43 132\r\n")
        }
    }

    @Test("a command that cannot start did not start, with the shell's exit code for it and why")
    func missingCommand() async throws {
        try await InProcessServer.with { server in
            let output = try await server.exec(["/does/not/exist"])
            #expect(output.result == RemoteCommandResult(exitCode: 127, message: "exec: \"/does/not/exist\": No such file or directory", started: false))
            let notRunnable = try await server.exec(["/etc/passwd"])
            #expect(notRunnable.result == RemoteCommandResult(exitCode: 126, message: "exec: \"/etc/passwd\": Permission denied", started: false))
            server.expectNoLiveChannels()
        }
    }

    @Test("10,000 sequential short execs: never an empty output")
    func sequentialShortExecs() async throws {
        try await InProcessServer.with { server in
            for index in 0..<10_000 {
                let output = try await server.exec(["echo", "run-\(index)"])
                try #require(output.stdoutText == "run-\(index)\n", "exec \(index) came back \(output.stdoutText.debugDescription)")
                try #require(output.result.exitCode == 0)
            }
            server.expectNoLiveChannels()
        }
    }

    @Test("16 clients × 1,000 concurrent short execs: never an empty output")
    func concurrentShortExecs() async throws {
        try await InProcessServer.with { server in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<16 {
                    group.addTask {
                        let connection = try await HTTP2ClientConnection.connect(to: server.address)
                        for index in 0..<1_000 {
                            let output = try await server.exec(["echo", "\(client)-\(index)"], on: connection)
                            try #require(output.stdoutText == "\(client)-\(index)\n")
                        }
                        await connection.close()
                    }
                }
                try await group.waitForAll()
            }
            server.expectNoLiveChannels()
        }
    }
}
