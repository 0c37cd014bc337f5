import ArgumentParser
import ExecStreamClient
import ExecStreamCore
import ExecStreamProtos
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `execstream console`: drives a container's console from a script, one JSON step per line.
struct ConsoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Drive a container's console (its main process on a terminal, or a shell started by --exec) with send, expect and run steps.",
        discussion: """
            Reads one JSON object per line on stdin (or from --script FILE) and writes one per step \
            on stdout: {"send":"text","timeout":30} types text and answers once the terminal has taken it; \
            {"expect":"text","regex":false,"timeout":30} waits for the text and takes the output up \
            to it ({"ok":true,"before":…,"match":…}); {"run":"command","input":"line\\n","timeout":30} \
            runs one line of shell between two fences (typing the optional input once it has \
            started) and answers {"ok":true,"output":…,"exitCode":N}. A failed \
            step answers {"ok":false,"error":{"code":"timeout","message":…,"tail":…}} and the next \
            step goes on (with --script, the first failure ends the run, exit code 1). Attached, a \
            dropped connection is taken up again with nothing lost or repeated. With --exec, the \
            console is a shell this command starts on a terminal (the command after --, /bin/sh by \
            default), which ends when the steps do.
            """
    )

    @OptionGroup var server: ServerOptions

    @Option(name: .customLong("script"), help: "Read the steps from this file instead of stdin; stop at the first failure.")
    var script: String?

    @Option(
        name: .customLong("prompt"),
        help: "The shell's prompt, a regular expression: after each run step, wait for it at the start of a line and take it."
    )
    var prompt: String?

    @Option(name: .customLong("reconnect-timeout"), help: "Seconds to keep reconnecting after the connection drops.")
    var reconnectTimeout: Double = 30

    @Flag(name: .customLong("exec"), help: "Start the console's shell by exec, on a terminal (the command after --, /bin/sh by default).")
    var exec = false

    @Argument(help: "The container: its main process runs on a terminal, or --exec starts a shell in it.")
    var container: String

    @Argument(parsing: .postTerminator, help: "With --exec, the shell and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        guard self.reconnectTimeout >= 0, self.reconnectTimeout.isFinite else {
            throw ValidationError("--reconnect-timeout must be 0 or more seconds")
        }
        guard self.exec || self.command.isEmpty else {
            throw ValidationError("a command is started only with --exec: execstream console CONTAINER --exec -- COMMAND")
        }
    }

    /// The shell --exec starts.
    private var shell: [String] {
        self.command.isEmpty ? ["/bin/sh"] : self.command
    }

    func run() async throws {
        let lines: [String]?
        if let script = self.script {
            guard let text = try? String(contentsOfFile: script, encoding: .utf8) else {
                StandardIO.write(Array("execstream: cannot read the script \(script)\n".utf8), to: STDERR_FILENO)
                throw ExitCode.failure
            }
            lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        } else {
            lines = nil
        }
        let server = self.server
        // Connect first: a server that cannot be reached (or an exec refused) is one clear error
        // at once.
        var terminal: (any ConsoleTerminal)?
        let code = await ClientFailure.reporting {
            terminal = try await self.terminal(server.connect())
            return 0
        }
        guard code == 0, let terminal else { throw ExitCode(code) }
        let console: ConsoleSession
        do {
            console = try ConsoleSession(terminal: terminal, prompt: self.prompt)
        } catch {
            StandardIO.write(Array("execstream: \(error.message)\n".utf8), to: STDERR_FILENO)
            throw ExitCode.failure
        }
        console.start()
        defer { console.close() }
        var failed = false
        for await line in Self.steps(lines) {
            guard !line.allSatisfy(\.isWhitespace) else { continue }
            let answer = await Self.perform(line, on: console)
            StandardIO.write(Array((Self.json(answer) + "\n").utf8), to: STDOUT_FILENO)
            if answer["ok"] as? Bool != true {
                failed = true
                if lines != nil { break }
            }
        }
        if failed && lines != nil { throw ExitCode.failure }
    }

    /// The console's terminal: an exec of the shell on `client`'s connection, or a resumable
    /// attach to the container's main process (each reconnection makes its own connection).
    private func terminal(_ client: CRIClient) async throws(ClientError) -> any ConsoleTerminal {
        if self.exec {
            let request = Runtime_V1_ExecRequest.with {
                $0.containerID = self.container
                $0.cmd = self.shell
                $0.tty = true
                $0.stdin = true
                $0.stdout = true
            }
            return try await CreditedExecClient.open(request, client: client)
        }
        await client.connection.close()
        let server = self.server
        let request = Runtime_V1_AttachRequest.with {
            $0.containerID = self.container
            $0.tty = true
            $0.stdin = true
            $0.stdout = true
        }
        return ResumableAttachClient(
            request: request,
            policy: .init(giveUpAfter: .milliseconds(Int64(self.reconnectTimeout * 1000))),
            connect: { () async throws(ClientError) -> CRIClient in try await server.connect() }
        )
    }

    /// The steps: the script's lines, or stdin's as they come.
    private static func steps(_ lines: [String]?) -> AsyncStream<String> {
        AsyncStream { continuation in
            if let lines {
                lines.forEach { continuation.yield($0) }
                continuation.finish()
                return
            }
            Thread.detachNewThread {
                while let line = readLine(strippingNewline: true) {
                    continuation.yield(line)
                }
                continuation.finish()
            }
        }
    }

    /// One step, as its answer.
    static func perform(_ line: String, on console: ConsoleSession) async -> [String: Any] {
        let step: ConsoleStep
        do {
            step = try ConsoleStep.parse(line)
        } catch {
            return Self.failure("invalid_step", error.message)
        }
        do {
            switch step {
            case .send(let text, let timeout):
                try await console.send(Array(text.utf8), timeout: timeout)
                return ["ok": true]
            case .expect(let pattern, let timeout):
                let match = try await console.expect(pattern, timeout: timeout)
                return ["ok": true, "before": Self.text(match.before), "match": Self.text(match.matched)]
            case .run(let command, let input, let timeout):
                let result = try await console.run(command, input: input.map { Array($0.utf8) }, timeout: timeout)
                return ["ok": true, "output": Self.text(result.output), "exitCode": result.exitStatus]
            }
        } catch {
            return Self.failure(error.code.rawValue, error.message, tail: error.tail)
        }
    }

    private static func failure(_ code: String, _ message: String, tail: String? = nil) -> [String: Any] {
        var error: [String: Any] = ["code": code, "message": message]
        if let tail { error["tail"] = tail }
        return ["ok": false, "error": error]
    }

    private static func text(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self)
    }

    private static func json(_ object: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
