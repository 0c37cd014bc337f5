package import ExecStreamCore
package import NIOCore
import Synchronization

/// The consumer end of one IOChannel: a network stream for output, the process's stdin writer for
/// input. The registry calls it outside its lock, from any thread; it hops to its own event loop.
package protocol IOChannelConsumer: AnyObject, Sendable {
    /// Write these bytes in order, then answer `delivered` or `deliveryFailed`. The first byte
    /// sits at `streamOffset` in the channel's stream.
    func deliver(_ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int, channel: IOChannelID, generation: ConsumerGeneration)
    /// The producer has ended and every byte has been delivered: end the stream, then answer
    /// `endOfStreamDelivered`.
    func deliverEndOfStream(channel: IOChannelID, generation: ConsumerGeneration)
    /// The consumer's part is over without an answer expected: a newer attach took the channel, or
    /// end of stream reached an older consumer first.
    func ended(channel: IOChannelID, generation: ConsumerGeneration, reason: IOChannelConsumerEnd)
}

/// Why a consumer's part ended without its own end of stream.
package enum IOChannelConsumerEnd: Hashable, Sendable {
    /// A newer consumer attached and took over from the first byte this one did not take.
    case preempted
    /// The channel ended and drained through an older consumer: nothing more will come.
    case endOfStream
}

/// Whether a channel id means anything to the registry.
package enum IOChannelPresence: Hashable, Sendable {
    /// Registered and not yet removed.
    case live
    /// Removed after draining (or collected); its tombstone answers for a while.
    case ended
    /// Never registered, or its tombstone has expired.
    case unknown
}

/// The producer end of one IOChannel: the process's output reader, or a client writing stdin.
package protocol IOChannelProducer: AnyObject, Sendable {
    /// Pause or resume reading. Signals can arrive out of order across threads; apply one only if
    /// its `sequence` is newer than the last one applied.
    func flowChanged(_ signal: ProducerFlowSignal, sequence: UInt64)
    /// Stop producing for good: a newer producer took over, or the channel is closing.
    func stop()
}

/// Owns the `IORegistryStateMachine`: keeps it behind a lock, reads the clock for it, remembers
/// which endpoint holds which generation, and carries out the effects after the lock is released.
///
/// Endpoints never see each other; everything they learn comes from here, so the guarantees the
/// machine proves (exactly once, newest attach wins, end of stream after the last byte, bounded
/// memory, no leaks) hold for the bytes that really move.
package final class ChannelRegistry: Sendable {
    private struct Endpoints {
        var consumers: [ConsumerGeneration: any IOChannelConsumer] = [:]
        var producers: [ProducerGeneration: any IOChannelProducer] = [:]
    }

    private struct State {
        var machine: IORegistryStateMachine
        var endpoints: [IOChannelID: Endpoints] = [:]
        /// Orders flow signals: a signal computed later under the lock has a larger number.
        var lastFlowSequence: UInt64 = 0
        var consumerPreemptions = 0
        var producerPreemptions = 0
    }

    private typealias Dispatch = () -> Void

    private let state: Mutex<State>

    package init(configuration: IORegistryStateMachine.Configuration = .init()) {
        self.state = Mutex(State(machine: IORegistryStateMachine(configuration: configuration)))
    }

    /// Live channels, for metrics and leak checks in tests.
    package var channelCount: Int { self.state.withLock { $0.machine.channelCount } }

    /// What the registry holds now (for metrics; O(channels), so read when scraped).
    package var statistics: IORegistryStatistics { self.state.withLock { $0.machine.statistics } }

    /// Consumers and producers a newer one has taken a channel from, since the start.
    package var preemptions: (consumers: Int, producers: Int) {
        self.state.withLock { ($0.consumerPreemptions, $0.producerPreemptions) }
    }

    /// A read-only view of a live channel.
    package func snapshot(of id: IOChannelID) -> IOChannelSnapshot? {
        self.state.withLock { $0.machine.snapshot(of: id) }
    }

    /// Whether `id` is live, has ended (its tombstone is there), or is unknown: why an attach
    /// found nothing to consume or produce into.
    package func presence(of id: IOChannelID) -> IOChannelPresence {
        self.state.withLock { state in
            if state.machine.snapshot(of: id) != nil { return .live }
            return state.machine.isTombstoned(id) ? .ended : .unknown
        }
    }

    // MARK: Lifecycle

    /// Creates a channel; false if a live one has this id.
    package func register(_ id: IOChannelID, options: IOChannelOptions? = nil) -> Bool {
        let now = NIODeadline.now()
        return self.state.withLock { state in
            switch state.machine.register(id, options: options, now: now) {
            case .registered:
                state.endpoints[id] = Endpoints()
                return true
            case .alreadyExists:
                return false
            }
        }
    }

    /// Asks for the channel to end: queued bytes still reach a consumer, then end of stream.
    package func requestRemoval(_ id: IOChannelID) {
        self.apply(id) { machine, now in machine.removalRequested(id, now: now) }
    }

    /// Collects channels nobody attended for their linger TTL. Call it every second or so.
    package func tick() {
        let now = NIODeadline.now()
        let dispatches = self.state.withLock { state -> [Dispatch] in
            var dispatches: [Dispatch] = []
            for expiry in state.machine.tick(now: now) {
                Self.collect(expiry.effects, for: expiry.id, in: &state, into: &dispatches)
            }
            return dispatches
        }
        dispatches.forEach { $0() }
    }

    // MARK: Producers

    /// Attaches `producer`; nil if the channel is unknown or gone. It must start paused if told so,
    /// which arrives through `flowChanged` before this returns.
    package func attachProducer(_ id: IOChannelID, _ producer: any IOChannelProducer) -> ProducerGeneration? {
        let now = NIODeadline.now()
        let (generation, dispatches) = self.state.withLock { state -> (ProducerGeneration?, [Dispatch]) in
            switch state.machine.producerAttached(id, now: now) {
            case .attached(let generation, let effects):
                state.endpoints[id, default: Endpoints()].producers[generation] = producer
                var dispatches: [Dispatch] = []
                Self.collect(effects, for: id, in: &state, into: &dispatches)
                return (generation, dispatches)
            case .rejected:
                return (nil, [])
            }
        }
        dispatches.forEach { $0() }
        return generation
    }

    /// The producer read `chunk`.
    package func produced(_ id: IOChannelID, _ chunk: ByteBuffer, by producer: ProducerGeneration) {
        self.apply(id) { machine, now in machine.produced(id, chunk, by: producer, now: now) }
    }

    /// The producer reached end of stream.
    package func producerClosed(_ id: IOChannelID, by producer: ProducerGeneration) {
        self.apply(id, forgettingProducer: producer) { machine, now in machine.producerClosed(id, by: producer, now: now) }
    }

    /// The producer went away without ending the stream (another may attach later).
    package func producerDetached(_ id: IOChannelID, by producer: ProducerGeneration) {
        self.apply(id, forgettingProducer: producer) { machine, now in machine.producerDetached(id, by: producer, now: now) }
    }

    // MARK: Consumers

    /// Attaches `consumer`: it wins at once. Nil means there is nothing to consume: the channel has
    /// ended (`consumer.ended(… .endOfStream)` has been called) or is unknown (not called).
    @discardableResult
    package func attachConsumer(_ id: IOChannelID, _ consumer: any IOChannelConsumer) -> ConsumerGeneration? {
        let now = NIODeadline.now()
        let (generation, dispatches) = self.state.withLock { state -> (ConsumerGeneration?, [Dispatch]) in
            switch state.machine.consumerAttached(id, now: now) {
            case .attached(let generation, let effects):
                state.endpoints[id, default: Endpoints()].consumers[generation] = consumer
                var dispatches: [Dispatch] = []
                Self.collect(effects, for: id, in: &state, into: &dispatches)
                return (generation, dispatches)
            case .endOfStream:
                return (nil, [{ consumer.ended(channel: id, generation: ConsumerGeneration(rawValue: 0), reason: .endOfStream) }])
            case .notFound:
                return (nil, [])
            }
        }
        dispatches.forEach { $0() }
        return generation
    }

    /// The consumer wrote the first `byteCount` bytes of its delivery.
    package func delivered(_ id: IOChannelID, byteCount: Int, by consumer: ConsumerGeneration) {
        self.apply(id) { machine, now in machine.delivered(id, byteCount: byteCount, by: consumer, now: now) }
    }

    /// The consumer wrote end of stream.
    package func endOfStreamDelivered(_ id: IOChannelID, by consumer: ConsumerGeneration) {
        self.apply(id, forgettingConsumer: consumer) { machine, now in machine.endOfStreamDelivered(id, by: consumer, now: now) }
    }

    /// The consumer failed after writing `deliveredByteCount` bytes of its delivery and is gone.
    package func deliveryFailed(_ id: IOChannelID, by consumer: ConsumerGeneration, deliveredByteCount: Int) {
        self.apply(id, forgettingConsumer: consumer) { machine, now in
            machine.deliveryFailed(id, by: consumer, deliveredByteCount: deliveredByteCount, now: now)
        }
    }

    /// The consumer left (with nothing in flight, or after answering its delivery).
    package func consumerDetached(_ id: IOChannelID, by consumer: ConsumerGeneration) {
        self.apply(id, forgettingConsumer: consumer) { machine, now in machine.consumerDetached(id, by: consumer, now: now) }
    }

    // MARK: Carrying out effects

    private func apply(
        _ id: IOChannelID,
        forgettingConsumer consumer: ConsumerGeneration? = nil,
        forgettingProducer producer: ProducerGeneration? = nil,
        _ event: (inout IORegistryStateMachine, NIODeadline) -> IOChannelOutcome
    ) {
        let now = NIODeadline.now()
        let dispatches = self.state.withLock { state -> [Dispatch] in
            let outcome = event(&state.machine, now)
            if let consumer { state.endpoints[id]?.consumers[consumer] = nil }
            if let producer { state.endpoints[id]?.producers[producer] = nil }
            switch outcome {
            case .accepted(let effects):
                var dispatches: [Dispatch] = []
                Self.collect(effects, for: id, in: &state, into: &dispatches)
                return dispatches
            case .rejected:
                return []
            }
        }
        dispatches.forEach { $0() }
    }

    /// Turns effects into calls on endpoints (made after the lock is released) and forgets
    /// endpoints whose part is over.
    private static func collect(_ effects: IOChannelEffects, for id: IOChannelID, in state: inout State, into dispatches: inout [Dispatch]) {
        guard !effects.isEmpty else { return }
        state.consumerPreemptions += effects.preemptedConsumer == nil ? 0 : 1
        state.producerPreemptions += effects.preemptedProducer == nil ? 0 : 1
        guard let endpoints = state.endpoints[id] else { return }
        if let preempted = effects.preemptedConsumer, let consumer = endpoints.consumers[preempted] {
            state.endpoints[id]?.consumers[preempted] = nil
            dispatches.append { consumer.ended(channel: id, generation: preempted, reason: .preempted) }
        }
        if let finished = effects.finishedConsumer, let consumer = endpoints.consumers[finished] {
            state.endpoints[id]?.consumers[finished] = nil
            dispatches.append { consumer.ended(channel: id, generation: finished, reason: .endOfStream) }
        }
        switch effects.delivery {
        case .bytes(let generation, let chunks, let byteCount, let streamOffset)?:
            if let consumer = endpoints.consumers[generation] {
                dispatches.append { consumer.deliver(chunks, byteCount: byteCount, streamOffset: streamOffset, channel: id, generation: generation) }
            }
        case .endOfStream(let generation)?:
            if let consumer = endpoints.consumers[generation] {
                dispatches.append { consumer.deliverEndOfStream(channel: id, generation: generation) }
            }
        case nil:
            break
        }
        for generation in [effects.preemptedProducer, effects.stoppedProducer].compactMap({ $0 }) {
            if let producer = endpoints.producers[generation] {
                state.endpoints[id]?.producers[generation] = nil
                dispatches.append { producer.stop() }
            }
        }
        if let signal = effects.producerFlow, let current = state.machine.snapshot(of: id)?.producer,
            let producer = endpoints.producers[current]
        {
            state.lastFlowSequence += 1
            let sequence = state.lastFlowSequence
            dispatches.append { producer.flowChanged(signal, sequence: sequence) }
        }
        if effects.removal != nil {
            // Whoever is left learns it through the effects above; the channel's table goes.
            state.endpoints[id] = nil
        }
    }
}
