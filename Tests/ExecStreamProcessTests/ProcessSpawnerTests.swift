import ExecStreamCore
import ExecStreamProcess
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Reads until EOF (or EIO: a pty whose slave side is gone), then closes `fd`.
private func readToEnd(_ fd: Int32) -> String {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count > 0 {
            bytes += buffer[..<count]
        } else if count < 0 && errno == EINTR {
            continue
        } else {
            break
        }
    }
    close(fd)
    return String(decoding: bytes, as: UTF8.self)
}

/// Reads until `marker` has arrived; returns everything read so far.
private func readUntil(_ fd: Int32, contains marker: String) -> String {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while !String(decoding: bytes, as: UTF8.self).contains(marker) {
        let count = read(fd, &buffer, buffer.count)
        guard count > 0 else { break }
        bytes += buffer[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

private func write(_ text: String, to fd: Int32) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
}

private func run(_ arguments: [String], stdio: ProcessConfiguration.Stdio = .pipes(stdin: false, stdout: true, stderr: true))
    async throws -> (stdout: String, stderr: String, status: ProcessExitStatus)
{
    let process = try ProcessSpawner.spawn(ProcessConfiguration(arguments: arguments, stdio: stdio))
    let stdout = process.stdout.map(readToEnd) ?? ""
    let stderr = process.stderr.map(readToEnd) ?? ""
    let status = await ProcessReaper.shared.waitForExit(pidfd: process.pidfd)
    return (stdout, stderr, status)
}

@Suite("Process spawning and reaping")
struct ProcessSpawnerTests {
    @Test("exact bytes of echo, by path and by PATH lookup")
    func echo() async throws {
        #expect(try await run(["/bin/echo", "-n", "hello"]).stdout == "hello")
        let result = try await run(["echo", "hi"])
        #expect(result.stdout == "hi\n")
        #expect(result.status == .exited(0))
    }

    @Test("stdout and stderr are separate pipes")
    func separateStreams() async throws {
        let result = try await run(["sh", "-c", "echo out; echo err >&2"])
        #expect(result.stdout == "out\n")
        #expect(result.stderr == "err\n")
    }

    @Test("stdin round-trips every byte, and closing it is EOF for the child")
    func stdinRoundTrip() async throws {
        let process = try ProcessSpawner.spawn(ProcessConfiguration(arguments: ["cat"], stdio: .pipes(stdin: true, stdout: true, stderr: false)))
        let input = (0..<50_000).map { _ in "abc\u{0}xyz\n" }.joined()
        let stdin = try #require(process.stdin)
        let writer = Task.detached {
            write(input, to: stdin)
            close(stdin)
        }
        let output = readToEnd(try #require(process.stdout))
        await writer.value
        #expect(output == input)
        #expect(await ProcessReaper.shared.waitForExit(pidfd: process.pidfd) == .exited(0))
    }

    @Test("exit codes are reported as they are", arguments: [0, 1, 42, 255] as [Int32])
    func exitCodes(code: Int32) async throws {
        let result = try await run(["sh", "-c", "exit \(code)"])
        #expect(result.status == .exited(code))
        #expect(result.status.remoteExitCode == UInt8(code))
    }

    @Test("death by signal n is 128+n for clients")
    func deathBySignal() async throws {
        let result = try await run(["sh", "-c", "kill -KILL $$"])
        #expect(result.status == .signaled(SIGKILL))
        #expect(result.status.remoteExitCode == 137)
    }

    @Test("the child leads its own session and process group")
    func sessionLeader() async throws {
        let result = try await run(["sh", "-c", "read -r line < /proc/$$/stat; echo \"$$ $line\""])
        let fields = result.stdout.split(separator: " ")
        // "pid pid (comm) state ppid pgrp session ..."
        let pid = fields[0]
        let afterComm = result.stdout.split(separator: ")")[1].split(separator: " ")
        #expect(afterComm[2] == pid, "process group")
        #expect(afterComm[3] == pid, "session")
    }

    @Test("signal dispositions are reset and no signal is blocked")
    func signalsReset() async throws {
        signal(SIGPIPE, SIG_IGN)  // as a server does; the child must not inherit it
        // grep reads its own status: the process we spawned, with no shell in between (a shell
        // blocks every signal around its own forks, which a read of its status can catch).
        let result = try await run(["grep", "-E", "^(SigBlk|SigIgn)", "/proc/self/status"])
        #expect(result.stdout == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n")
    }

    @Test("only stdin, stdout and stderr are inherited")
    func noDescriptorLeaks() async throws {
        let result = try await run(["sh", "-c", "ls /proc/$$/fd"])
        #expect(result.stdout.split(separator: "\n").sorted() == ["0", "1", "2"])
    }

    @Test("working directory and environment")
    func directoryAndEnvironment() async throws {
        let process = try ProcessSpawner.spawn(
            ProcessConfiguration(arguments: ["sh", "-c", "pwd; echo \"$FOO\""], environment: ["PATH=/usr/bin:/bin", "FOO=bar"], workingDirectory: "/tmp")
        )
        #expect(readToEnd(try #require(process.stdout)) == "/tmp\nbar\n")
        _ = process.stderr.map(readToEnd)
        _ = await ProcessReaper.shared.waitForExit(pidfd: process.pidfd)
    }

    @Test("a command that names nothing runnable is one clear error, before any spawn")
    func notFound() throws {
        let error = #expect(throws: ProcessError.self) { try ProcessSpawner.spawn(ProcessConfiguration(arguments: ["no-such-command-x"])) }
        #expect(error?.code == .executableNotFound)
        #expect(error?.message == "exec: \"no-such-command-x\": executable file not found in $PATH")
        let path = "/tmp/execstream-not-executable-\(getpid())"
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        close(fd)
        defer { unlink(path) }
        let notExecutable = #expect(throws: ProcessError.self) { try ProcessSpawner.spawn(ProcessConfiguration(arguments: [path])) }
        #expect(notExecutable?.code == .notExecutable)
        #expect(notExecutable?.message == "exec: \"\(path)\": Permission denied")
        #expect(error?.shellExitCode == 127)
        #expect(notExecutable?.shellExitCode == 126)
        let directory = #expect(throws: ProcessError.self) { try ProcessSpawner.spawn(ProcessConfiguration(arguments: ["/tmp"])) }
        #expect(directory?.code == .notExecutable)
        #expect(directory?.shellExitCode == 126)
        let missingPath = #expect(throws: ProcessError.self) { try ProcessSpawner.spawn(ProcessConfiguration(arguments: ["/no/such/binary"])) }
        #expect(missingPath?.code == .executableNotFound)
        #expect(missingPath?.shellExitCode == 127)
    }

    @Test("a file the kernel will not run (no program, a missing interpreter) is not executable: 126")
    func refusedByTheKernel() throws {
        for (name, contents) in [("format", "echo no interpreter line\n"), ("interpreter", "#!/no/such/interpreter\necho\n")] {
            let path = "/tmp/execstream-refused-\(name)-\(getpid())"
            let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o755)
            _ = contents.withCString { write(fd, $0, strlen($0)) }
            close(fd)
            defer { unlink(path) }
            let error = #expect(throws: ProcessError.self) { try ProcessSpawner.spawn(ProcessConfiguration(arguments: [path])) }
            #expect(error?.code == .notExecutable, "\(name)")
            #expect(error?.shellExitCode == 126, "\(name)")
            #expect(error?.message.hasPrefix("exec: \"\(path)\": execve: ") == true, "\(name)")
        }
    }

    @Test("a failure in the child names its step")
    func failedStep() {
        let error = #expect(throws: ProcessError.self) {
            try ProcessSpawner.spawn(ProcessConfiguration(arguments: ["true"], workingDirectory: "/no/such/directory"))
        }
        #expect(error?.code == .spawnFailed)
        #expect(error?.message.contains("chdir") == true)
        #expect(error?.shellExitCode == nil, "a failure of the system, not of the command")
    }

    @Test("killing the process group takes background children with it")
    func groupKill() async throws {
        let process = try ProcessSpawner.spawn(ProcessConfiguration(arguments: ["sh", "-c", "sleep 1000 & echo started; wait"]))
        let stdout = try #require(process.stdout)
        #expect(readUntil(stdout, contains: "started").contains("started"))
        ProcessSpawner.signalGroup(of: process.pid, SIGKILL)
        // EOF on stdout means every holder of its write end is gone: the sleep died too.
        _ = readToEnd(stdout)
        _ = process.stderr.map(readToEnd)
        #expect(await ProcessReaper.shared.waitForExit(pidfd: process.pidfd) == .signaled(SIGKILL))
    }
}

@Suite("Processes on a pseudo-terminal")
struct TerminalProcessTests {
    @Test("the initial size is applied before the child runs")
    func initialSize() async throws {
        let result = try await run(["stty", "size"], stdio: .terminal(initialSize: TerminalSize(width: 80, height: 24)))
        #expect(result.stdout == "24 80\r\n")
        #expect(result.status == .exited(0))
    }

    @Test("the terminal is the child's controlling terminal")
    func controllingTerminal() async throws {
        let result = try await run(["sh", "-c", "test -t 0 && test -t 1 && : < /dev/tty && echo ctty"], stdio: .terminal(initialSize: nil))
        #expect(result.stdout == "ctty\r\n")
    }

    @Test("a resize reaches the running child")
    func resize() async throws {
        let process = try ProcessSpawner.spawn(
            ProcessConfiguration(arguments: ["sh", "-c", "stty size; read line; stty size"], stdio: .terminal(initialSize: TerminalSize(width: 80, height: 24)))
        )
        let terminal = try #require(process.terminal)
        #expect(readUntil(terminal, contains: "24 80").contains("24 80"))
        try ProcessSpawner.resize(terminal: terminal, to: TerminalSize(width: 132, height: 50))
        write("\n", to: terminal)
        #expect(readToEnd(terminal).contains("50 132"))
        #expect(await ProcessReaper.shared.waitForExit(pidfd: process.pidfd) == .exited(0))
    }
}

/// The console fence (`ConsoleCommandFence`) against real shells on a real terminal: the echo of
/// the typed lines, the prompts and the continuation prompt never match a fence, and each
/// command's output and status come back exactly.
@Suite("Fenced commands on a shell's terminal")
struct FencedConsoleTests {
    /// Reads the terminal into `transcript` until `done` says so; fails after 20 s of silence.
    private func read(_ terminal: Int32, into transcript: inout ConsoleTranscript, until done: (inout ConsoleTranscript) -> Bool) throws {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !done(&transcript) {
            var descriptor = pollfd(fd: terminal, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 20_000) == 1 else {
                Issue.record("no output for 20 s; seen: \(transcript.tail())")
                throw CancellationError()
            }
            let count = Glibc.read(terminal, &buffer, buffer.count)
            guard count > 0 else { throw CancellationError() }
            transcript.append(buffer[..<count])
        }
    }

    @Test("output and exit status of each command, exactly", arguments: [["sh", "-i"], ["bash", "--norc", "--noprofile", "-i"]])
    func commands(shell: [String]) async throws {
        let process = try ProcessSpawner.spawn(
            ProcessConfiguration(arguments: shell, environment: ["PATH=/usr/bin:/bin", "PS1=prompt$ ", "TERM=dumb"], stdio: .terminal(initialSize: TerminalSize(width: 80, height: 24)))
        )
        let terminal = try #require(process.terminal)
        var transcript = ConsoleTranscript()
        let cases: [(command: String, output: String, status: Int)] = [
            ("echo hello; echo world", "hello\r\nworld\r\n", 0),
            ("printf 'no final newline'", "no final newline", 0),
            ("printf 'ESB_%s\\nESE_%s:0\\n' fake fake", "ESB_fake\r\nESE_fake:0\r\n", 0),
            ("false", "", 1),
            ("sh -c 'exit 7'", "", 7),
            ("echo a # a comment ends at the line's end", "a\r\n", 0),
            ("echo x;", "x\r\n", 0),
        ]
        for (command, output, status) in cases {
            let fence = ConsoleCommandFence.random()
            write(fence.input(for: command), to: terminal)
            var result: ConsoleCommandFence.Result?
            try self.read(terminal, into: &transcript) { transcript in
                result = fence.take(from: &transcript)
                return result != nil
            }
            #expect(result == .init(output: Array(output.utf8), exitStatus: status), "\(shell[0]): \(command)")
        }
        // A command that reads a line of stdin reads the next line typed, not the end fence.
        let fence = ConsoleCommandFence.random()
        write(fence.input(for: "read line; echo \"got $line\""), to: terminal)
        try self.read(terminal, into: &transcript) { transcript in
            (try? transcript.contains(fence.startPattern)) == true
        }
        write("typed\n", to: terminal)
        var result: ConsoleCommandFence.Result?
        try self.read(terminal, into: &transcript) { transcript in
            result = fence.take(from: &transcript)
            return result != nil
        }
        #expect(result == .init(output: Array("typed\r\ngot typed\r\n".utf8), exitStatus: 0), "\(shell[0])")
        write("exit\n", to: terminal)
        _ = readToEnd(terminal)
        _ = await ProcessReaper.shared.waitForExit(pidfd: process.pidfd)
    }
}
