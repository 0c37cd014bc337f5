import Foundation
import Testing

/// The model-based randomized test of the registry (see `RegistryModelChecker`).
///
/// `make test` runs 20,000 sequences; `make soak` runs 1,000,000. To replay one failing sequence:
///
///     EXECSTREAM_MODEL_SEED=<seed> EXECSTREAM_MODEL_SEQUENCES=1 swift test --filter IORegistryModelTests
@Suite("IOChannel registry: model-based randomized test")
struct IORegistryModelTests {
    /// Sequences run in parallel partitions; each partition takes every `partitions`-th seed.
    static let partitions = 8

    static var firstSeed: UInt64 {
        ProcessInfo.processInfo.environment["EXECSTREAM_MODEL_SEED"].flatMap { UInt64($0) } ?? 1
    }

    static var sequenceCount: Int {
        ProcessInfo.processInfo.environment["EXECSTREAM_MODEL_SEQUENCES"].flatMap { Int($0) } ?? 20_000
    }

    @Test("random sequences of every event match the reference model after every step", arguments: 0..<partitions)
    func randomSequencesMatchTheModel(partition: Int) {
        var seed = Self.firstSeed + UInt64(partition)
        let lastSeed = Self.firstSeed + UInt64(Self.sequenceCount)
        while seed < lastSeed {
            var checker = RegistryModelChecker(seed: seed)
            let steps = 20 + Int(seed % 181)
            do {
                try checker.run(steps: steps)
            } catch {
                Issue.record("\(error)\n  replay: EXECSTREAM_MODEL_SEED=\(seed) EXECSTREAM_MODEL_SEQUENCES=1 swift test --filter IORegistryModelTests")
                return
            }
            seed += UInt64(Self.partitions)
        }
    }
}
