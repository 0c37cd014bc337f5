import ExecStreamClient
import ExecStreamCore
import ExecStreamHTTP2
import ExecStreamProtos
import ExecStreamServer
import NIOCore
import Testing

@Suite("Attach end to end (in-process server, native HTTP/2)")
struct AttachEndToEndTests {
    static let configuration = ServerConfiguration(
        listenAddresses: [.tcp(host: "127.0.0.1", port: 0)],
        containers: [
            ServerConfiguration.demoContainer,
            ContainerSpec(id: "once", mainProcess: MainProcessSpec(command: ["sh", "-c", "read line; echo got-$line"])),
            ContainerSpec(id: "early", mainProcess: MainProcessSpec(command: ["sh", "-c", "echo early; read x; echo late-$x"])),
            ContainerSpec(id: "quiet", mainProcess: MainProcessSpec(command: ["true"], stdin: false)),
            ContainerSpec(id: "no-main"),
        ]
    )

    /// Opens an attach stream to `container` (stdin on).
    func attach(_ server: InProcessServer, _ container: String, stdin: Bool = true) async throws -> NativeStreamClient {
        let url = try await server.client.attach(.with {
            $0.containerID = container
            $0.stdin = stdin
            $0.stdout = true
            $0.stderr = true
        }).url
        return try await NativeStreamClient.open(url: url, on: server.client.connection)
    }

    /// Receives until `marker` has arrived on stdout, then cancels (the client leaves).
    func receive(until marker: String, from stream: NativeStreamClient) async throws -> String {
        var stdout = ""
        do {
            _ = try await stream.receive { which, bytes in
                if which == .stdout { stdout += String(buffer: bytes) }
                if stdout.contains(marker) {
                    stream.cancel()
                }
            }
        } catch {
            // The cancel ends the stream with a reset: expected once the marker is in.
            #expect(stdout.contains(marker), "the stream broke early: \(error)")
        }
        return stdout
    }

    @Test("attach writes to the main process's stdin and reads its output; leaving does not stop it")
    func attachToDemo() async throws {
        try await InProcessServer.with(configuration: Self.configuration) { server in
            let first = try await self.attach(server, "demo")
            try await first.sendStdin(ByteBuffer(string: "echo first-$((20+22))\n"))
            #expect(try await self.receive(until: "first-42\n", from: first) == "first-42\n")
            // The shell survived its client: a second attach talks to the same process.
            let second = try await self.attach(server, "demo")
            try await second.sendStdin(ByteBuffer(string: "echo second-$$\n"))
            let output = try await self.receive(until: "\n", from: second)
            #expect(output.hasPrefix("second-"))
        }
    }

    @Test("when the main process exits, attach drains its output and ends with Success")
    func mainProcessExits() async throws {
        try await InProcessServer.with(configuration: Self.configuration) { server in
            let stream = try await self.attach(server, "once")
            try await stream.sendStdin(ByteBuffer(string: "x\n"))
            var stdout = ""
            let result = try await stream.receive { which, bytes in
                if which == .stdout { stdout += String(buffer: bytes) }
            }
            #expect(stdout == "got-x\n")
            #expect(result == RemoteCommandResult(exitCode: 0, message: ""))
        }
    }

    @Test("output written before anyone attached is delivered to the first attach")
    func bufferedForReattach() async throws {
        try await InProcessServer.with(configuration: Self.configuration) { server in
            let stream = try await self.attach(server, "early")
            try await stream.sendStdin(ByteBuffer(string: "y\n"))
            var stdout = ""
            _ = try await stream.receive { which, bytes in
                if which == .stdout { stdout += String(buffer: bytes) }
            }
            #expect(stdout == "early\nlate-y\n")
        }
    }

    @Test("attach to a container whose main process exited is refused")
    func attachAfterExit() async throws {
        try await InProcessServer.with(configuration: Self.configuration) { server in
            // `quiet` exits at once; wait for that through the CRI status, not a clock.
            var state = Runtime_V1_ContainerState.containerRunning
            while state == .containerRunning {
                let request = Runtime_V1_ContainerStatusRequest.with { $0.containerID = "quiet" }
                let response: Runtime_V1_ContainerStatusResponse = try await server.client.unary(
                    "/runtime.v1.RuntimeService/ContainerStatus",
                    request
                ).response
                state = response.status.state
                await Task.yield()
            }
            // An exited container with no output left refuses new attaches, as a runtime does.
            await #expect(throws: ClientError.self) { _ = try await self.attach(server, "quiet", stdin: false) }
        }
    }

    @Test("attach to a container without a main process is FailedPrecondition")
    func noMainProcess() async throws {
        try await InProcessServer.with(configuration: Self.configuration) { server in
            let error = await #expect(throws: ClientError.self) { _ = try await self.attach(server, "no-main") }
            #expect(error?.grpcStatus == 9)
        }
    }

    @Test("past the session limit: 429 with Retry-After, and the token is still good afterwards")
    func sessionLimit() async throws {
        var configuration = Self.configuration
        configuration.sessions.maxConcurrentSessions = 1
        try await InProcessServer.with(configuration: configuration) { server in
            let holder = try await self.attach(server, "demo")
            try await holder.sendStdin(ByteBuffer(string: "echo holding\n"))
            let url = try await server.client.exec(.with {
                $0.containerID = "demo"
                $0.cmd = ["echo", "after"]
                $0.stdout = true
            }).url
            let refused = try await NativeStreamClient.open(url: url, on: server.client.connection)
            let error = await #expect(throws: ClientError.self) { _ = try await refused.receive { _, _ in } }
            #expect(error?.code == .streamRefused)
            #expect(error?.message == "the streaming endpoint answered HTTP 429")
            // Free the slot (the holder leaves once its marker is in), then the same token works.
            _ = try await self.receive(until: "holding\n", from: holder)
            var stdout = ""
            for attempt in 0..<1_000 {
                let retry = try await NativeStreamClient.open(url: url, on: server.client.connection)
                do {
                    _ = try await retry.receive { _, bytes in stdout += String(buffer: bytes) }
                    break
                } catch let error as ClientError where error.code == .streamRefused && attempt < 999 {
                    // The holder's release runs on its event loop; it lands shortly.
                    await Task.yield()
                }
            }
            #expect(stdout == "after\n")
        }
    }
}
