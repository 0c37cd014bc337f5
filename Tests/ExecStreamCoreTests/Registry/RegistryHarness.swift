import ExecStreamCore
import NIOCore
import Testing

/// Drives an `IORegistryStateMachine` with a fake clock and unwraps outcomes, recording the
/// source location of the test line that failed.
struct RegistryHarness {
    var registry: IORegistryStateMachine
    var now = NIODeadline.uptimeNanoseconds(1_000_000_000)

    init(options: IOChannelOptions = IOChannelOptions(), tombstoneTTL: TimeAmount = .seconds(30)) {
        self.registry = IORegistryStateMachine(
            configuration: .init(defaultChannelOptions: options, tombstoneTTL: tombstoneTTL)
        )
    }

    mutating func advance(by amount: TimeAmount) {
        self.now = self.now + amount
    }

    mutating func register(_ id: IOChannelID, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(self.registry.register(id, now: self.now) == .registered, sourceLocation: sourceLocation)
    }

    mutating func attachProducer(_ id: IOChannelID, sourceLocation: SourceLocation = #_sourceLocation) -> (ProducerGeneration, IOChannelEffects) {
        switch self.registry.producerAttached(id, now: self.now) {
        case .attached(let generation, let effects):
            return (generation, effects)
        case .rejected(let rejection):
            Issue.record("producerAttached rejected: \(rejection)", sourceLocation: sourceLocation)
            return (ProducerGeneration(rawValue: 0), IOChannelEffects())
        }
    }

    mutating func attachConsumer(_ id: IOChannelID, sourceLocation: SourceLocation = #_sourceLocation) -> (ConsumerGeneration, IOChannelEffects) {
        switch self.registry.consumerAttached(id, now: self.now) {
        case .attached(let generation, let effects):
            return (generation, effects)
        case .endOfStream, .notFound:
            Issue.record("consumerAttached did not attach", sourceLocation: sourceLocation)
            return (ConsumerGeneration(rawValue: 0), IOChannelEffects())
        }
    }

    /// Unwraps an accepted outcome; records an issue for a rejection.
    func accepted(_ outcome: IOChannelOutcome, sourceLocation: SourceLocation = #_sourceLocation) -> IOChannelEffects {
        switch outcome {
        case .accepted(let effects):
            return effects
        case .rejected(let rejection):
            Issue.record("event rejected: \(rejection)", sourceLocation: sourceLocation)
            return IOChannelEffects()
        }
    }

    mutating func produce(_ id: IOChannelID, _ text: String, by producer: ProducerGeneration, sourceLocation: SourceLocation = #_sourceLocation) -> IOChannelEffects {
        self.accepted(self.registry.produced(id, ByteBuffer(string: text), by: producer, now: self.now), sourceLocation: sourceLocation)
    }
}

/// The bytes of a delivery as a string, or nil when it is not a byte delivery to `consumer`.
func deliveredText(_ delivery: IOChannelDelivery?, to consumer: ConsumerGeneration) -> String? {
    guard case .bytes(let target, let chunks, let byteCount, _) = delivery, target == consumer else { return nil }
    var joined = ByteBuffer()
    for var chunk in chunks {
        joined.writeBuffer(&chunk)
    }
    precondition(joined.readableBytes == byteCount, "a delivery's byteCount must match its chunks")
    return String(buffer: joined)
}

extension IOChannelID {
    static func stdout(_ owner: String) -> IOChannelID { IOChannelID(owner: owner, stream: .stdout) }
    static func stdin(_ owner: String) -> IOChannelID { IOChannelID(owner: owner, stream: .stdin) }
}
