// ExecStream benchmarks: `make bench` (release build). Figures are printed, never asserted.
// Today they cover the core's hot paths; transport and end-to-end benchmarks join them with the
// server, each beside its peer from the same run.

import ExecStreamCore
import Foundation
import NIOCore

/// Runs `body` once to warm up, then `iterations` times; returns the best wall time in seconds.
func measure(iterations: Int = 5, _ body: () -> Void) -> Double {
    body()
    var best = Double.infinity
    for _ in 0..<iterations {
        let elapsed = ContinuousClock().measure(body)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        best = min(best, seconds)
    }
    return best
}

func report(_ name: String, _ value: Double, _ unit: String) {
    let padded = name.padding(toLength: 58, withPad: " ", startingAt: 0)
    print("\(padded) \(String(format: "%12.1f", value)) \(unit)")
}

let now = NIODeadline.uptimeNanoseconds(1)

/// One channel, producer → registry → consumer → acknowledgement, for `chunkCount` chunks.
func registryHandoff(chunkSize: Int, chunkCount: Int) -> Double {
    let chunk = ByteBuffer(repeating: 0x61, count: chunkSize)
    let id = IOChannelID(owner: "bench", stream: .stdout)
    return measure {
        var registry = IORegistryStateMachine()
        _ = registry.register(id, now: now)
        guard case .attached(let producer, _) = registry.producerAttached(id, now: now),
            case .attached(let consumer, _) = registry.consumerAttached(id, now: now)
        else { fatalError("attach failed") }
        for _ in 0..<chunkCount {
            guard case .accepted(let effects) = registry.produced(id, chunk, by: producer, now: now),
                case .bytes(_, _, let byteCount, _) = effects.delivery
            else { fatalError("no delivery") }
            _ = registry.delivered(id, byteCount: byteCount, by: consumer, now: now)
        }
    }
}

print("ExecStream core benchmarks (best of 5)")
let chunkCount = 200_000
let small = registryHandoff(chunkSize: 1, chunkCount: chunkCount)
report("registry: produce+deliver+ack, 1-byte chunks", Double(chunkCount) / small / 1e6, "M chunks/s")
let large = registryHandoff(chunkSize: 64 << 10, chunkCount: chunkCount)
report("registry: produce+deliver+ack, 64 KiB chunks", Double(chunkCount) * 65536 / large / Double(1 << 30), "GiB/s")

let channelCount = 10_000
var crowded = IORegistryStateMachine()
for index in 0..<channelCount {
    _ = crowded.register(IOChannelID(owner: "c\(index)", stream: .stdout), now: now)
    _ = crowded.producerAttached(IOChannelID(owner: "c\(index)", stream: .stdout), now: now)
}
let tick = measure { _ = crowded.tick(now: now + .seconds(1)) }
report("registry: tick over \(channelCount) live channels", tick * 1e6, "µs")

let tokenRounds = 100_000
let tokens = measure {
    var cache = TokenCache<Int>()
    for index in 0..<tokenRounds {
        let token = try! cache.insert(index, kind: .exec, now: now)
        _ = try! cache.consume(token, kind: .exec, now: now)
    }
}
report("token cache: insert+consume", Double(tokenRounds) / tokens / 1e3, "k pairs/s")

var frames = ByteBuffer()
let payload = ByteBuffer(repeating: 0x62, count: 64 << 10)
for _ in 0..<4096 {
    NativeFrameEncoder.encode(.data(.stdout, payload), into: &frames)
}
let decode = measure {
    var decoder = NativeFrameDecoder()
    var input = frames
    while let frame = try! decoder.decode(buffer: &input) {
        _ = frame
    }
}
report("native frames: decode 64 KiB frames", Double(4096 * 65536) / decode / Double(1 << 30), "GiB/s")
