import ExecStreamClient
import ExecStreamCore
import ExecStreamProtos
import ExecStreamServer
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(
    "namespaces isolation (as root)",
    .enabled(if: geteuid() == 0, "namespaces isolation creates mount, pid, uts and ipc namespaces, which needs root")
)
struct NamespacesEndToEndTests {
    static let configuration = ServerConfiguration(
        listenAddresses: [.tcp(host: "127.0.0.1", port: 0)],
        containers: [
            ServerConfiguration.demoContainer,
            ContainerSpec(id: "box", name: "box-host", isolation: .namespaces, mainProcess: MainProcessSpec(command: ["/bin/sh"])),
        ]
    )

    func exec(_ server: InProcessServer, _ command: [String]) async throws -> String {
        let url = try await server.client.exec(.with {
            $0.containerID = "box"
            $0.cmd = command
            $0.stdout = true
        }).url
        let stream = try await NativeStreamClient.open(url: url, on: server.client.connection)
        var stdout = ""
        let result = try await stream.receive { _, bytes in stdout += String(buffer: bytes) }
        #expect(result.exitCode == 0, "\(command): \(result.message)")
        return stdout
    }

    @Test("an exec sees the container's hostname, processes and namespaces, not the host's")
    func execJoinsTheMainProcess() async throws {
        try await InProcessServer.with(configuration: Self.configuration) { server in
            #expect(try await self.exec(server, ["hostname"]) == "box-host\n")
            // pid 1 is the main process; the exec's own ps is in there too, and nothing of the host.
            let processes = try await self.exec(server, ["ps", "-e", "-o", "pid=,comm="])
            let lines = processes.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            #expect(lines.first == ["1", "sh"])
            #expect(lines.count == 2, "\(processes)")
            let inside = try await self.exec(server, ["readlink", "/proc/self/ns/pid", "/proc/self/ns/uts", "/proc/self/ns/ipc", "/proc/self/ns/mnt"])
            let host = try ["pid", "uts", "ipc", "mnt"].map { try Self.readlink("/proc/self/ns/\($0)") }
            for (container, ours) in zip(inside.split(separator: "\n").map(String.init), host) {
                #expect(container != ours)
            }
        }
    }

    @Test("ExecSync joins the same namespaces")
    func execSync() async throws {
        try await InProcessServer.with(configuration: Self.configuration) { server in
            let (response, _) = try await server.client.execSync(.with {
                $0.containerID = "box"
                $0.cmd = ["hostname"]
            })
            #expect(String(decoding: response.stdout, as: UTF8.self) == "box-host\n")
        }
    }

    static func readlink(_ path: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        let count = Glibc.readlink(path, &buffer, buffer.count)
        try #require(count > 0)
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
