import ExecStreamClient
import ExecStreamCore
import ExecStreamHTTP2
import ExecStreamProtos
import ExecStreamServer
import Foundation
import NIOCore
import Testing

@Suite("The trust boundary: control calls only where the peer is known")
struct TrustBoundaryTests {
    @Test("over plain TCP every control call is PERMISSION_DENIED and runs nothing; health and streams still work")
    func plainTCPServesOnlyTheDataPlane() async throws {
        try await InProcessServer.with { server in
            let dataAddress = try #require(server.dataAddress)
            let tcp = CRIClient(connection: try await HTTP2ClientConnection.connect(to: dataAddress))
            let marker = "/tmp/execstream-boundary-\(UUID().uuidString)"
            let calls: [(String, () async throws -> Void)] = [
                ("Version", { _ = try await tcp.version() }),
                ("ExecSync", { _ = try await tcp.execSync(.with { $0.containerID = "demo"; $0.cmd = ["touch", marker] }) }),
                ("Exec", { _ = try await tcp.exec(.with { $0.containerID = "demo"; $0.cmd = ["touch", marker]; $0.stdout = true }) }),
                ("Attach", { _ = try await tcp.attach(.with { $0.containerID = "demo"; $0.stdout = true }) }),
            ]
            for (name, call) in calls {
                let error = await #expect(throws: ClientError.self, "\(name) over plain TCP") { try await call() }
                #expect(error?.grpcStatus == 7, "\(name): PERMISSION_DENIED")
                #expect(error?.message.contains("is a control-plane call") == true)
                #expect(error?.message.contains("\(dataAddress) (plain TCP)") == true, "the listener is named")
            }
            #expect(!FileManager.default.fileExists(atPath: marker), "nothing ran")

            // The same connection still serves health, and a URL issued on the socket streams over it.
            let health: (response: Grpc_Health_V1_HealthCheckResponse, trailers: [HTTP2ClientHeader]) = try await tcp.unary(
                "/grpc.health.v1.Health/Check",
                Grpc_Health_V1_HealthCheckRequest()
            )
            #expect(health.response.status == .serving)
            let url = try await server.client.exec(.with { $0.containerID = "demo"; $0.cmd = ["echo", "over tcp"]; $0.stdout = true }).url
            let stream = try await NativeStreamClient.open(url: url, on: tcp.connection)
            var stdout = ByteBuffer()
            let result = try await stream.receive { _, bytes in stdout.writeImmutableBuffer(bytes) }
            #expect(String(buffer: stdout) == "over tcp\n")
            #expect(result.exitCode == 0)
            await tcp.connection.close()
        }
    }

    @Test("the unix socket serves control calls")
    func unixSocketServesControlCalls() async throws {
        try await InProcessServer.with { server in
            let version = try await server.client.version()
            #expect(version.runtimeName == ExecStreamVersion.runtimeName)
        }
    }

    @Test("a 200 KB ExecSync argument is INVALID_ARGUMENT at once, with a short message")
    func oversizedArgument() async throws {
        try await InProcessServer.with { server in
            let error = await #expect(throws: ClientError.self) {
                _ = try await server.client.execSync(.with { $0.containerID = "demo"; $0.cmd = ["echo", String(repeating: "a", count: 200_000)] })
            }
            #expect(error?.grpcStatus == 3)
            #expect(error?.message == "argument 1 is 200000 bytes; at most 131071 are allowed")
        }
    }

    @Test("an ExecSync output larger than the message limit arrives truncated, with its notice, within the limit")
    func execSyncFitsTheMessageLimit() async throws {
        var configuration = ServerConfiguration(listenAddresses: [.tcp(host: "127.0.0.1", port: 0)])
        configuration.grpc.maxMessageBytes = 1 << 20
        configuration.execSyncOutputLimit = 1 << 20
        try await InProcessServer.with(configuration: configuration) { server in
            let (response, trailers) = try await server.client.execSync(
                .with { $0.containerID = "demo"; $0.cmd = ["sh", "-c", "head -c 3000000 /dev/zero; head -c 100 /dev/zero >&2"] }
            )
            let serialized: [UInt8] = try response.serializedBytes()
            #expect(serialized.count <= 1 << 20)
            let dropped = try #require(trailers[first: "execstream-stdout-dropped-bytes"].flatMap { Int($0) })
            #expect(response.stdout.count + dropped == 3_000_000 + "\n[execstream: stdout truncated: \(dropped) bytes dropped]\n".utf8.count)
            let notice = "\n[execstream: stdout truncated: \(dropped) bytes dropped]\n"
            #expect(response.stdout.suffix(notice.utf8.count).elementsEqual(notice.utf8))
            #expect(response.stderr.count == 100)
            #expect(trailers[first: "execstream-stderr-dropped-bytes"] == "0")
        }
    }
}
