// `make bench`: exec `true` end to end (Exec RPC → native stream → status) against a running
// `execstream serve`, beside bare posix_spawn + waitpid of the same binary, in one run.
// Usage: ExecLatency --server CONTROL [--tls-ca FILE] [--runs N] [--label TEXT]. The Exec calls go
// to the control plane (the unix socket); the streams go to the data-plane listener their URL
// names, over one connection (TLS for https://, trusting --tls-ca). Figures are printed, never
// asserted.

import ExecStreamClient
import ExecStreamCore
import ExecStreamHTTP2
import ExecStreamProtos
import Foundation

#if canImport(Glibc)
import Glibc
#endif

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
}

func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e3 + Double(duration.components.attoseconds) / 1e15
}

func report(_ name: String, _ samples: [Double]) {
    let sorted = samples.sorted()
    let padded = name.padding(toLength: 52, withPad: " ", startingAt: 0)
    print("\(padded) p50 \(String(format: "%7.3f", percentile(sorted, 0.50))) ms   p99 \(String(format: "%7.3f", percentile(sorted, 0.99))) ms")
}

/// posix_spawn + waitpid of /bin/true: what starting a process costs with no server at all.
func bareSpawn() -> Double {
    let clock = ContinuousClock()
    var pid: pid_t = 0
    let arguments: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
    defer { free(arguments[0]) }
    let elapsed = clock.measure {
        guard posix_spawn(&pid, "/bin/true", nil, nil, arguments, environ) == 0 else { fatalError("posix_spawn failed") }
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }
    return milliseconds(elapsed)
}

let arguments = CommandLine.arguments
func argument(_ name: String) -> String? {
    arguments.firstIndex(of: name).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
}
guard let serverText = argument("--server"), let address = try? ListenAddress(parsing: serverText) else {
    fatalError("usage: ExecLatency --server CONTROL [--tls-ca FILE] [--runs N] [--label TEXT]")
}
let runs = argument("--runs").flatMap { Int($0) } ?? 1000
let label = argument("--label") ?? "plain TCP"
let tls = argument("--tls-ca").map { ClientTLSConfiguration(caFile: $0) }

let client = CRIClient(connection: try await HTTP2ClientConnection.connect(to: address))
let request = Runtime_V1_ExecRequest.with {
    $0.containerID = "demo"
    $0.cmd = ["/bin/true"]
    $0.stdout = true
    $0.stderr = true
}
// One data-plane connection for every stream, opened once (its handshake is not measured).
let firstURL = try await client.exec(request).url
let data = try await HTTP2ClientConnection.connect(toStreamingURL: firstURL, tls: tls)
_ = try await NativeStreamClient.open(url: firstURL, on: data).receive { _, _ in }
func execTrue() async throws -> Double {
    let clock = ContinuousClock()
    let start = clock.now
    let url = try await client.exec(request).url
    let stream = try await NativeStreamClient.open(url: url, on: data)
    let result = try await stream.receive { _, _ in }
    precondition(result.exitCode == 0, "exec true failed: \(result)")
    return milliseconds(clock.now - start)
}

// Warm up both, then interleave so that both see the same machine.
for _ in 0..<50 {
    _ = try await execTrue()
    _ = bareSpawn()
}
var endToEnd: [Double] = []
var spawn: [Double] = []
for _ in 0..<runs {
    endToEnd.append(try await execTrue())
    spawn.append(bareSpawn())
}
print("exec `true`, \(runs) runs, streams over one \(label) connection")
report("  ExecStream end to end (RPC + stream + status)", endToEnd)
report("  posix_spawn + waitpid (no server)", spawn)
let ratio = percentile(endToEnd.sorted(), 0.5) / percentile(spawn.sorted(), 0.5)
print("  ratio at p50: \(String(format: "%.1f", ratio))×")
