public import NIOCore

// # The IOChannel registry
//
// The registry hands a process's output from one consumer to the next without losing or
// repeating a byte, whatever the timing of attaches, detaches, failures and closes. It is a plain
// value: no I/O, no locks, no clock reads. Its owner keeps it in a `Mutex`, passes `now` into
// every event, and carries out the returned effects after releasing the lock.
//
// Per id, a channel goes through:
//
//     (unknown) ──register──▶ live channel (see IOChannel+StateMachine.swift) ──removed──▶ tombstone
//         ▲                                                                                  │
//         └───────────────────────────── tick(now) past the tombstone TTL ──────────────────┘
//
//   - `register` creates a channel; an id that is live already is refused, a tombstoned one is
//     reused (the tombstone goes).
//   - A channel is removed when end of stream has been delivered after its last byte, or when its
//     linger TTL passes while nobody attends it. Its tombstone answers a late `consumerAttached`
//     with `.endOfStream` at once, and anything else with `.channelRemoved`.
//   - An id that was never registered, or whose tombstone has expired, is `.notFound`.
//
// The registry allocates producer and consumer generations from one strictly increasing counter,
// so "newest attach wins" is decided by the order of events alone, and stale events from
// preempted endpoints are recognised and refused without harm.

/// The state machine of the IOChannel registry: every channel, keyed by `<id>-stdin|stdout|stderr`.
public struct IORegistryStateMachine: Sendable {
    /// Registry-wide settings.
    public struct Configuration: Hashable, Sendable {
        /// Options for channels registered without their own.
        public var defaultChannelOptions: IOChannelOptions
        /// How long a removed channel's tombstone answers late attaches with end of stream.
        public var tombstoneTTL: TimeAmount

        /// Default channel options and a 30 second tombstone.
        public init(defaultChannelOptions: IOChannelOptions = IOChannelOptions(), tombstoneTTL: TimeAmount = .seconds(30)) {
            self.defaultChannelOptions = defaultChannelOptions
            self.tombstoneTTL = tombstoneTTL
        }
    }

    /// A channel collected by `tick`.
    public struct Expiry: Hashable, Sendable {
        /// The channel.
        public var id: IOChannelID
        /// What the owner must do: `removal` is always set (reason `.lingerExpired`).
        public var effects: IOChannelEffects
    }

    private let configuration: Configuration
    private var channels: [IOChannelID: IOChannelStateMachine] = [:]
    /// Removed channels and when their tombstones expire.
    private var tombstones: [IOChannelID: NIODeadline] = [:]
    /// The last generation handed out, to producers and consumers alike.
    private var lastGeneration: UInt64 = 0

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    // MARK: Inspection

    /// Number of live channels.
    public var channelCount: Int { self.channels.count }

    /// Number of tombstones still answering late attaches.
    public var tombstoneCount: Int { self.tombstones.count }

    /// The ids of all live channels, in no particular order.
    public var channelIDs: [IOChannelID] { Array(self.channels.keys) }

    /// A read-only view of a live channel; nil if it is not live.
    public func snapshot(of id: IOChannelID) -> IOChannelSnapshot? {
        self.channels[id]?.snapshot
    }

    /// What the registry holds now, over every live channel (for metrics, read when scraped).
    public var statistics: IORegistryStatistics {
        var statistics = IORegistryStatistics()
        for channel in self.channels.values {
            guard let snapshot = channel.snapshot else { continue }
            statistics.channelCount += 1
            statistics.bufferedByteCount += snapshot.queuedByteCount + snapshot.inFlightByteCount
            statistics.pausedProducerCount += snapshot.producerPaused ? 1 : 0
        }
        return statistics
    }

    /// True if `id` has a tombstone.
    public func isTombstoned(_ id: IOChannelID) -> Bool {
        self.tombstones[id] != nil
    }

    // MARK: Lifecycle

    /// A process (container main process or exec) is about to exist: create its channel.
    public mutating func register(_ id: IOChannelID, options: IOChannelOptions? = nil, now: NIODeadline) -> OnRegister {
        guard self.channels[id] == nil else { return .alreadyExists }
        self.tombstones[id] = nil
        self.channels[id] = IOChannelStateMachine(options: options ?? self.configuration.defaultChannelOptions, now: now)
        return .registered
    }

    /// The owner wants the channel gone: see `IOChannelStateMachine.removalRequested`.
    public mutating func removalRequested(_ id: IOChannelID, now: NIODeadline) -> IOChannelOutcome {
        self.withChannel(id, now: now) { $0.removalRequested(now: now) }
    }

    /// Time passed: collect channels past their linger TTL and forget expired tombstones.
    public mutating func tick(now: NIODeadline) -> [Expiry] {
        if self.tombstones.values.contains(where: { $0 <= now }) {
            self.tombstones = self.tombstones.filter { $0.value > now }
        }
        var expiries: [Expiry] = []
        // Mutate in place through the values view: no copy of the dictionary.
        var index = self.channels.startIndex
        while index != self.channels.endIndex {
            if let effects = self.channels.values[index].tick(now: now) {
                expiries.append(Expiry(id: self.channels.keys[index], effects: effects))
            }
            self.channels.formIndex(after: &index)
        }
        for expiry in expiries {
            self.bury(expiry.id, now: now)
        }
        return expiries
    }

    // MARK: Producer events

    /// A producer attached to `id`. It gets a new generation and preempts any current producer.
    public mutating func producerAttached(_ id: IOChannelID, now: NIODeadline) -> OnProducerAttached {
        guard self.channels[id] != nil else {
            return .rejected(self.tombstones[id] == nil ? .notFound : .channelRemoved)
        }
        let generation = ProducerGeneration(rawValue: self.nextGeneration())
        return self.channels[id]!.producerAttached(generation, now: now)
    }

    /// The producer `producer` read `chunk` for `id`.
    public mutating func produced(_ id: IOChannelID, _ chunk: ByteBuffer, by producer: ProducerGeneration, now: NIODeadline) -> IOChannelOutcome {
        self.withChannel(id, now: now) { $0.produced(chunk, by: producer, now: now) }
    }

    /// The producer `producer` of `id` reached end of stream.
    public mutating func producerClosed(_ id: IOChannelID, by producer: ProducerGeneration, now: NIODeadline) -> IOChannelOutcome {
        self.withChannel(id, now: now) { $0.producerClosed(by: producer, now: now) }
    }

    /// The producer `producer` of `id` went away without ending the stream.
    public mutating func producerDetached(_ id: IOChannelID, by producer: ProducerGeneration, now: NIODeadline) -> IOChannelOutcome {
        self.withChannel(id, now: now) { $0.producerDetached(by: producer, now: now) }
    }

    // MARK: Consumer events

    /// A consumer attached to `id`: it wins at once, with a new generation. A tombstoned id ends
    /// the consumer at once; an unknown id is not found.
    public mutating func consumerAttached(_ id: IOChannelID, now: NIODeadline) -> OnConsumerAttached {
        guard self.channels[id] != nil else {
            return self.tombstones[id] == nil ? .notFound : .endOfStream
        }
        let generation = ConsumerGeneration(rawValue: self.nextGeneration())
        return self.channels[id]!.consumerAttached(generation, now: now)
    }

    /// The consumer `consumer` wrote the first `byteCount` bytes of its delivery on `id`.
    public mutating func delivered(_ id: IOChannelID, byteCount: Int, by consumer: ConsumerGeneration, now: NIODeadline) -> IOChannelOutcome {
        self.withChannel(id, now: now) { $0.delivered(byteCount, by: consumer, now: now) }
    }

    /// The consumer `consumer` wrote end of stream on `id`; the channel is removed.
    public mutating func endOfStreamDelivered(_ id: IOChannelID, by consumer: ConsumerGeneration, now: NIODeadline) -> IOChannelOutcome {
        self.withChannel(id, now: now) { $0.endOfStreamDelivered(by: consumer, now: now) }
    }

    /// The consumer `consumer` of `id` failed after delivering `deliveredByteCount` bytes and is gone.
    public mutating func deliveryFailed(
        _ id: IOChannelID,
        by consumer: ConsumerGeneration,
        deliveredByteCount: Int,
        now: NIODeadline
    ) -> IOChannelOutcome {
        self.withChannel(id, now: now) { $0.deliveryFailed(by: consumer, deliveredByteCount: deliveredByteCount, now: now) }
    }

    /// The consumer `consumer` of `id` left.
    public mutating func consumerDetached(_ id: IOChannelID, by consumer: ConsumerGeneration, now: NIODeadline) -> IOChannelOutcome {
        self.withChannel(id, now: now) { $0.consumerDetached(consumer, now: now) }
    }

    // MARK: Helpers

    private mutating func nextGeneration() -> UInt64 {
        self.lastGeneration += 1
        return self.lastGeneration
    }

    private mutating func withChannel(
        _ id: IOChannelID,
        now: NIODeadline,
        _ event: (inout IOChannelStateMachine) -> IOChannelOutcome
    ) -> IOChannelOutcome {
        guard self.channels[id] != nil else {
            return .rejected(self.tombstones[id] == nil ? .notFound : .channelRemoved)
        }
        let outcome = event(&self.channels[id]!)
        switch outcome {
        case .accepted(let effects) where effects.removal != nil:
            self.bury(id, now: now)
        case .accepted, .rejected:
            break
        }
        return outcome
    }

    private mutating func bury(_ id: IOChannelID, now: NIODeadline) {
        self.channels[id] = nil
        self.tombstones[id] = now + self.configuration.tombstoneTTL
    }
}
