import ExecStreamCore
import NIOCore

/// A small, fast, seedable generator (SplitMix64), so every randomized sequence can be replayed
/// from its seed alone.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A violated expectation, with the step it happened at.
struct ModelViolation: Error, CustomStringConvertible {
    var description: String
}

/// Drives an `IORegistryStateMachine` with random sequences of every event over several channels
/// and checks it against a reference model after every step.
///
/// The model is deliberately naive: per channel it keeps every byte the producers wrote and the
/// concatenation of what consumers acknowledged, in order, and derives everything else from those
/// (pending bytes = written − acknowledged). The driver plays well-behaved owners (producers obey
/// pause; consumers answer their deliveries) but also fires stale and invalid events, which must be
/// refused without changing anything.
///
/// Checked after every step:
///  1. exactly once, in order: every delivery is the next unacknowledged slice of what was written;
///  2. newest attach wins: a consumer attach preempts exactly the previous consumer, at once;
///  3. end of stream only when the producer ended and everything was acknowledged; late attaches
///     to a tombstone get end of stream; unknown ids are not found;
///  4. no leaks: removal exactly at drained end of stream or linger expiry (with the dropped count),
///     and the registry is empty once every channel is wound down;
///  5. bounded memory: pending ≤ high watermark + one chunk; pause/resume exactly at the watermarks;
///  6. liveness: a current consumer with nothing in flight means there is nothing to deliver.
struct RegistryModelChecker {
    /// What the model knows of one channel id.
    struct ChannelModel {
        var live = false
        var tombstoneExpiry: NIODeadline?
        var written: [UInt8] = []
        var acknowledged: [UInt8] = []
        var producer: ProducerGeneration?
        var everHadProducer = false
        var producerEnded = false
        var paused = false
        var consumer: ConsumerGeneration?
        /// The delivery out: its owner and bytes (nil bytes: end of stream).
        var inFlight: (owner: ConsumerGeneration, bytes: [UInt8]?)?
        var unattendedSince: NIODeadline?
        var producersSeen: [ProducerGeneration] = []
        var consumersSeen: [ConsumerGeneration] = []

        var pending: Int { self.written.count - self.acknowledged.count }
    }

    let seed: UInt64
    private var rng: SplitMix64
    private let options: IOChannelOptions
    private let tombstoneTTL: TimeAmount
    private let maxChunk: Int
    private var registry: IORegistryStateMachine
    private var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
    private let ids: [IOChannelID]
    private var models: [IOChannelID: ChannelModel] = [:]
    private var lastGeneration: UInt64 = 0
    private var step = 0
    private var trail: [String] = []

    init(seed: UInt64) {
        self.seed = seed
        var rng = SplitMix64(seed: seed)
        let high = Int.random(in: 4...64, using: &rng)
        self.options = IOChannelOptions(
            highWatermark: high,
            lowWatermark: Int.random(in: 0..<high, using: &rng),
            maxDeliveryBytes: Int.random(in: 1...32, using: &rng),
            lingerTTL: .seconds(Int64.random(in: 1...8, using: &rng))
        )
        self.tombstoneTTL = .seconds(Int64.random(in: 1...4, using: &rng))
        self.maxChunk = Int.random(in: 1...24, using: &rng)
        self.ids = [.init(owner: "a", stream: .stdout), .init(owner: "a", stream: .stdin), .init(owner: "b-c", stream: .stderr)]
        self.registry = IORegistryStateMachine(configuration: .init(defaultChannelOptions: self.options, tombstoneTTL: self.tombstoneTTL))
        self.rng = rng
        for id in self.ids {
            self.models[id] = ChannelModel()
        }
    }

    /// Runs `steps` random events, then winds every channel down and checks nothing is left.
    mutating func run(steps: Int) throws(ModelViolation) {
        for _ in 0..<steps {
            self.step += 1
            try self.randomEvent()
            try self.checkInvariants()
        }
        try self.windDown()
    }

    // MARK: Random events

    private mutating func randomEvent() throws(ModelViolation) {
        let id = self.ids.randomElement(using: &self.rng)!
        switch Int.random(in: 0..<100, using: &self.rng) {
        case 0..<6: try self.register(id)
        case 6..<13: try self.attachProducer(id)
        case 13..<38: try self.produce(id, stale: false)
        case 38..<41: try self.produce(id, stale: true)
        case 41..<44: try self.closeProducer(id)
        case 44..<47: try self.detachProducer(id)
        case 47..<49: try self.requestRemoval(id)
        case 49..<57: try self.attachConsumer(id)
        case 57..<77: try self.acknowledge(id, failing: false)
        case 77..<83: try self.acknowledge(id, failing: true)
        case 83..<87: try self.detachConsumer(id)
        case 87..<92: try self.invalidAcknowledgement(id)
        default: try self.tick(by: .milliseconds(Int64.random(in: 0...3000, using: &self.rng)))
        }
    }

    private mutating func register(_ id: IOChannelID) throws(ModelViolation) {
        self.note("register \(id)")
        let outcome = self.registry.register(id, now: self.now)
        if self.models[id]!.live {
            try self.expect(outcome == .alreadyExists, "register of a live id: \(outcome)")
            return
        }
        try self.expect(outcome == .registered, "register: \(outcome)")
        var model = ChannelModel()
        model.live = true
        model.unattendedSince = self.now
        self.models[id] = model
    }

    private mutating func attachProducer(_ id: IOChannelID) throws(ModelViolation) {
        self.note("producerAttached \(id)")
        let outcome = self.registry.producerAttached(id, now: self.now)
        var model = self.models[id]!
        guard model.live else {
            try self.expect(outcome == .rejected(model.tombstoneExpiry == nil ? .notFound : .channelRemoved), "attach producer to dead id: \(outcome)")
            return
        }
        guard !model.producerEnded else {
            try self.expect(outcome == .rejected(.producerClosed), "attach producer after end: \(outcome)")
            return
        }
        guard case .attached(let generation, let effects) = outcome else {
            throw self.violation("attach producer rejected: \(outcome)")
        }
        try self.expectNewGeneration(generation.rawValue)
        try self.expect(effects.preemptedProducer == model.producer, "preemptedProducer \(String(describing: effects.preemptedProducer)), expected \(String(describing: model.producer))")
        if model.producer == nil {
            model.paused = model.pending >= self.options.highWatermark
        }
        try self.expect(effects.producerFlow == (model.paused ? .pause : nil), "a new producer starts paused iff the channel is over its high watermark")
        try self.expect(effects.delivery == nil && effects.removal == nil && effects.preemptedConsumer == nil, "unexpected effects on producer attach")
        model.producer = generation
        model.everHadProducer = true
        model.producersSeen.append(generation)
        self.models[id] = model
        self.noteAttendance(id)
    }

    private mutating func produce(_ id: IOChannelID, stale: Bool) throws(ModelViolation) {
        var model = self.models[id]!
        let generation: ProducerGeneration
        if !stale, let current = model.producer, !model.paused {
            generation = current
        } else if stale, let old = model.producersSeen.randomElement(using: &self.rng), old != model.producer {
            generation = old
        } else {
            return
        }
        let isCurrent = model.live && !model.producerEnded && generation == model.producer
        let count = Int.random(in: 0...self.maxChunk, using: &self.rng)
        // Bytes that must never be accepted are marked 0xEE so a wrongful acceptance shows.
        let bytes = isCurrent ? Self.streamBytes(from: model.written.count, count: count) : [UInt8](repeating: 0xEE, count: count)
        self.note("produced \(id) \(generation) \(count)B")
        let outcome = self.registry.produced(id, ByteBuffer(bytes: bytes), by: generation, now: self.now)
        guard model.live else {
            try self.expect(outcome == .rejected(model.tombstoneExpiry == nil ? .notFound : .channelRemoved), "produce to dead id: \(outcome)")
            return
        }
        guard !model.producerEnded else {
            try self.expect(outcome == .rejected(.producerClosed), "produce after end: \(outcome)")
            return
        }
        guard isCurrent else {
            try self.expect(outcome == .rejected(.staleGeneration), "stale produce: \(outcome)")
            return
        }
        guard case .accepted(let effects) = outcome else { throw self.violation("produce rejected: \(outcome)") }
        model.written += bytes
        let shouldPause = count > 0 && !model.paused && model.pending >= self.options.highWatermark
        try self.expect(effects.producerFlow == (shouldPause ? .pause : nil), "pause exactly when pending reaches the high watermark")
        model.paused = model.paused || shouldPause
        self.models[id] = model
        try self.apply(effects, to: id, allowed: [.delivery, .producerFlow])
    }

    private mutating func closeProducer(_ id: IOChannelID) throws(ModelViolation) {
        try self.endProducer(id, closing: true)
    }

    private mutating func detachProducer(_ id: IOChannelID) throws(ModelViolation) {
        try self.endProducer(id, closing: false)
    }

    private mutating func endProducer(_ id: IOChannelID, closing: Bool) throws(ModelViolation) {
        var model = self.models[id]!
        let useStale = Int.random(in: 0..<4, using: &self.rng) == 0
        guard let generation = useStale ? model.producersSeen.randomElement(using: &self.rng) : model.producer else { return }
        self.note("\(closing ? "producerClosed" : "producerDetached") \(id) \(generation)")
        let outcome = closing
            ? self.registry.producerClosed(id, by: generation, now: self.now)
            : self.registry.producerDetached(id, by: generation, now: self.now)
        guard model.live else {
            try self.expect(outcome == .rejected(model.tombstoneExpiry == nil ? .notFound : .channelRemoved), "end producer on dead id: \(outcome)")
            return
        }
        guard !model.producerEnded else {
            try self.expect(outcome == .rejected(.producerClosed), "end producer after end: \(outcome)")
            return
        }
        guard generation == model.producer else {
            try self.expect(outcome == .rejected(.staleGeneration), "stale end producer: \(outcome)")
            return
        }
        guard case .accepted(let effects) = outcome else { throw self.violation("end producer rejected: \(outcome)") }
        model.producer = nil
        model.paused = false
        model.producerEnded = closing
        self.models[id] = model
        try self.apply(effects, to: id, allowed: closing ? [.delivery] : [])
        self.noteAttendance(id)
    }

    private mutating func requestRemoval(_ id: IOChannelID) throws(ModelViolation) {
        self.note("removalRequested \(id)")
        let outcome = self.registry.removalRequested(id, now: self.now)
        var model = self.models[id]!
        guard model.live else {
            try self.expect(outcome == .rejected(model.tombstoneExpiry == nil ? .notFound : .channelRemoved), "removal of dead id: \(outcome)")
            return
        }
        guard case .accepted(let effects) = outcome else { throw self.violation("removal rejected: \(outcome)") }
        if model.producerEnded {
            try self.expect(effects.isEmpty, "a second removal request does nothing")
            return
        }
        try self.expect(effects.stoppedProducer == model.producer, "removal stops the current producer")
        model.producer = nil
        model.paused = false
        model.producerEnded = true
        self.models[id] = model
        try self.apply(effects, to: id, allowed: [.delivery, .stoppedProducer])
        self.noteAttendance(id)
    }

    private mutating func attachConsumer(_ id: IOChannelID) throws(ModelViolation) {
        self.note("consumerAttached \(id)")
        let outcome = self.registry.consumerAttached(id, now: self.now)
        var model = self.models[id]!
        guard model.live else {
            try self.expect(outcome == (model.tombstoneExpiry == nil ? .notFound : .endOfStream), "attach to dead id: \(outcome)")
            return
        }
        guard case .attached(let generation, let effects) = outcome else { throw self.violation("attach consumer: \(outcome)") }
        try self.expectNewGeneration(generation.rawValue)
        try self.expect(effects.preemptedConsumer == model.consumer, "newest attach preempts exactly the current consumer")
        model.consumer = generation
        model.consumersSeen.append(generation)
        self.models[id] = model
        try self.apply(effects, to: id, allowed: [.delivery, .preemptedConsumer])
        self.noteAttendance(id)
    }

    /// The holder of the delivery in flight answers it: success (maybe partial) or failure.
    private mutating func acknowledge(_ id: IOChannelID, failing: Bool) throws(ModelViolation) {
        var model = self.models[id]!
        guard model.live, let inFlight = model.inFlight else { return }
        let outcome: IOChannelOutcome
        var deliveredCount = 0
        switch inFlight.bytes {
        case .none:
            self.note("\(failing ? "deliveryFailed(EOF)" : "endOfStreamDelivered") \(id) \(inFlight.owner)")
            outcome = failing
                ? self.registry.deliveryFailed(id, by: inFlight.owner, deliveredByteCount: 0, now: self.now)
                : self.registry.endOfStreamDelivered(id, by: inFlight.owner, now: self.now)
        case .some(let bytes):
            let partial = Int.random(in: 0..<3, using: &self.rng) == 0
            deliveredCount = (partial || failing) ? Int.random(in: 0...bytes.count, using: &self.rng) : bytes.count
            self.note("\(failing ? "deliveryFailed" : "delivered") \(id) \(inFlight.owner) \(deliveredCount)/\(bytes.count)B")
            outcome = failing
                ? self.registry.deliveryFailed(id, by: inFlight.owner, deliveredByteCount: deliveredCount, now: self.now)
                : self.registry.delivered(id, byteCount: deliveredCount, by: inFlight.owner, now: self.now)
        }
        guard case .accepted(let effects) = outcome else { throw self.violation("acknowledgement rejected: \(outcome)") }
        model.inFlight = nil
        if let bytes = inFlight.bytes {
            model.acknowledged += bytes.prefix(deliveredCount)
        }
        if failing, model.consumer == inFlight.owner {
            model.consumer = nil
        }
        if inFlight.bytes == nil && !failing {
            try self.expect(model.acknowledged == model.written, "drained removal with bytes unacknowledged")
            try self.expect(effects.removal == IOChannelRemoval(reason: .drained, droppedByteCount: 0), "EOF acknowledged removes the channel")
            let waiting = model.consumer == inFlight.owner ? nil : model.consumer
            try self.expect(effects.finishedConsumer == waiting, "a newer consumer waiting behind EOF is finished at once")
            try self.expect(effects.delivery == nil, "nothing is delivered after EOF")
            model.live = false
            model.tombstoneExpiry = self.now + self.tombstoneTTL
            self.models[id] = model
            return
        }
        try self.expectResume(effects, &model)
        self.models[id] = model
        try self.apply(effects, to: id, allowed: [.delivery, .producerFlow])
        self.noteAttendance(id)
    }

    private mutating func detachConsumer(_ id: IOChannelID) throws(ModelViolation) {
        var model = self.models[id]!
        guard let generation = model.consumersSeen.randomElement(using: &self.rng) else { return }
        self.note("consumerDetached \(id) \(generation)")
        let outcome = self.registry.consumerDetached(id, by: generation, now: self.now)
        guard model.live else {
            try self.expect(outcome == .rejected(model.tombstoneExpiry == nil ? .notFound : .channelRemoved), "detach on dead id: \(outcome)")
            return
        }
        if let inFlight = model.inFlight, inFlight.owner == generation {
            guard case .accepted(let effects) = outcome else { throw self.violation("detach with delivery out rejected: \(outcome)") }
            model.inFlight = nil
            if model.consumer == generation {
                model.consumer = nil
            }
            try self.expectResume(effects, &model)
            self.models[id] = model
            try self.apply(effects, to: id, allowed: [.delivery, .producerFlow])
        } else if model.consumer == generation {
            try self.expect(outcome == .accepted(IOChannelEffects()), "idle consumer detach: \(outcome)")
            model.consumer = nil
            self.models[id] = model
        } else {
            try self.expect(outcome == .rejected(.staleGeneration), "stale consumer detach: \(outcome)")
        }
        self.noteAttendance(id)
    }

    /// Acknowledgements that must be refused and change nothing.
    private mutating func invalidAcknowledgement(_ id: IOChannelID) throws(ModelViolation) {
        let model = self.models[id]!
        guard model.live, let someone = model.consumersSeen.randomElement(using: &self.rng) else { return }
        let before = self.registry.snapshot(of: id)
        let outcome: IOChannelOutcome
        let expected: IOChannelRejection
        switch (model.inFlight, Int.random(in: 0..<3, using: &self.rng)) {
        case (.some(let inFlight), 0) where inFlight.bytes != nil:
            self.note("delivered(too many) \(id)")
            outcome = self.registry.delivered(id, byteCount: inFlight.bytes!.count + 1, by: inFlight.owner, now: self.now)
            expected = .mismatchedAcknowledgement
        case (.some(let inFlight), 1):
            self.note("endOfStreamDelivered(mismatch?) \(id)")
            guard inFlight.bytes != nil else { return }
            outcome = self.registry.endOfStreamDelivered(id, by: inFlight.owner, now: self.now)
            expected = .mismatchedAcknowledgement
        case (let inFlight, _):
            guard inFlight?.owner != someone else { return }
            self.note("delivered(stale) \(id) \(someone)")
            outcome = self.registry.delivered(id, byteCount: 0, by: someone, now: self.now)
            expected = .staleGeneration
        }
        try self.expect(outcome == .rejected(expected), "invalid acknowledgement: \(outcome), expected \(expected)")
        try self.expect(self.registry.snapshot(of: id) == before, "a refused event changed the channel")
    }

    private mutating func tick(by amount: TimeAmount) throws(ModelViolation) {
        self.now = self.now + amount
        self.note("tick +\(amount.nanoseconds / 1_000_000)ms")
        let expiries = self.registry.tick(now: self.now)
        var expected: [IOChannelID: Int] = [:]
        for id in self.ids {
            var model = self.models[id]!
            if let expiry = model.tombstoneExpiry, expiry <= self.now {
                model.tombstoneExpiry = nil
            }
            if model.live, let since = model.unattendedSince, self.now >= since + self.options.lingerTTL {
                expected[id] = model.pending
                model = ChannelModel(tombstoneExpiry: self.now + self.tombstoneTTL)
            }
            self.models[id] = model
        }
        let actual = Dictionary(uniqueKeysWithValues: expiries.map { ($0.id, $0.effects) })
        try self.expect(Set(actual.keys) == Set(expected.keys), "linger expiries \(actual.keys.sorted { $0.description < $1.description }), expected \(expected.keys.sorted { $0.description < $1.description })")
        for (id, dropped) in expected {
            var effects = IOChannelEffects()
            effects.removal = IOChannelRemoval(reason: .lingerExpired, droppedByteCount: dropped)
            try self.expect(actual[id] == effects, "linger expiry of \(id): \(String(describing: actual[id]))")
        }
    }

    // MARK: Effects

    private enum EffectKind {
        case delivery, preemptedConsumer, producerFlow, stoppedProducer
    }

    /// Checks and applies the effects of an accepted event. `allowed` lists the fields the event
    /// may set besides those checked by the caller; any other field set is a violation.
    private mutating func apply(_ effects: IOChannelEffects, to id: IOChannelID, allowed: Set<EffectKind>) throws(ModelViolation) {
        var model = self.models[id]!
        try self.expect(effects.removal == nil && effects.finishedConsumer == nil && effects.preemptedProducer == nil, "unexpected removal or finish")
        try self.expect(allowed.contains(.preemptedConsumer) || effects.preemptedConsumer == nil, "unexpected preemption")
        try self.expect(allowed.contains(.producerFlow) || effects.producerFlow == nil, "unexpected flow signal")
        try self.expect(allowed.contains(.stoppedProducer) || effects.stoppedProducer == nil, "unexpected stop")
        switch effects.delivery {
        case .none:
            break
        case .some(.bytes(let consumer, let chunks, let byteCount, let streamOffset)):
            try self.expect(allowed.contains(.delivery), "unexpected delivery")
            try self.expect(consumer == model.consumer, "delivery to \(consumer), current is \(String(describing: model.consumer))")
            try self.expect(model.inFlight == nil, "two deliveries in flight")
            var bytes: [UInt8] = []
            for chunk in chunks {
                try self.expect(chunk.readableBytes > 0, "an empty chunk was delivered")
                bytes += chunk.readableBytesView
            }
            try self.expect(bytes.count == byteCount, "byteCount \(byteCount) does not match chunks (\(bytes.count))")
            try self.expect(byteCount <= self.options.maxDeliveryBytes || chunks.count == 1, "delivery over maxDeliveryBytes")
            let offset = model.acknowledged.count
            try self.expect(streamOffset == offset, "delivery at stream offset \(streamOffset), expected \(offset)")
            try self.expect(
                offset + bytes.count <= model.written.count && Array(model.written[offset..<offset + bytes.count]) == bytes,
                "delivery is not the next unacknowledged bytes (exactly once, in order)"
            )
            model.inFlight = (consumer, bytes)
        case .some(.endOfStream(let consumer)):
            try self.expect(allowed.contains(.delivery), "unexpected end of stream")
            try self.expect(consumer == model.consumer, "EOF to \(consumer), current is \(String(describing: model.consumer))")
            try self.expect(model.inFlight == nil, "EOF while a delivery is in flight")
            try self.expect(model.producerEnded && model.pending == 0, "EOF before the last byte")
            model.inFlight = (consumer, nil)
        }
        self.models[id] = model
    }

    private func expectResume(_ effects: IOChannelEffects, _ model: inout ChannelModel) throws(ModelViolation) {
        let shouldResume = model.producer != nil && model.paused && model.pending <= self.options.lowWatermark
        try self.expect(effects.producerFlow == (shouldResume ? .resume : nil), "resume exactly when pending falls to the low watermark (pending \(model.pending))")
        if shouldResume {
            model.paused = false
        }
    }

    // MARK: Invariants

    private func checkInvariants() throws(ModelViolation) {
        for id in self.ids {
            let model = self.models[id]!
            try self.expect(self.registry.isTombstoned(id) == (model.tombstoneExpiry != nil), "tombstone of \(id)")
            guard model.live else {
                try self.expect(self.registry.snapshot(of: id) == nil, "\(id) should not be live")
                continue
            }
            guard let snapshot = self.registry.snapshot(of: id) else { throw self.violation("\(id) should be live") }
            let phase: IOChannelPhase =
                model.producerEnded ? .draining : model.producer != nil ? .producing : model.everHadProducer ? .awaitingProducer : .created
            try self.expect(snapshot.phase == phase, "phase \(snapshot.phase), expected \(phase)")
            try self.expect(snapshot.queuedByteCount + snapshot.inFlightByteCount == model.pending, "bytes held \(snapshot.queuedByteCount)+\(snapshot.inFlightByteCount) != written − acknowledged \(model.pending)")
            try self.expect(snapshot.inFlightByteCount == (model.inFlight?.bytes?.count ?? 0), "in-flight bytes")
            try self.expect(snapshot.acknowledgedByteCount == model.acknowledged.count, "acknowledged offset \(snapshot.acknowledgedByteCount), expected \(model.acknowledged.count)")
            try self.expect(snapshot.receivedByteCount == model.written.count, "received \(snapshot.receivedByteCount), expected \(model.written.count)")
            try self.expect(snapshot.endOfStreamInFlight == (model.inFlight != nil && model.inFlight!.bytes == nil), "EOF in flight")
            try self.expect(snapshot.inFlightOwner == model.inFlight?.owner, "in-flight owner")
            try self.expect(snapshot.consumer == model.consumer, "current consumer")
            try self.expect(snapshot.producer == model.producer, "current producer")
            try self.expect(snapshot.producerPaused == model.paused, "paused flag")
            try self.expect(snapshot.unattendedSince == model.unattendedSince, "unattended since \(String(describing: snapshot.unattendedSince)), expected \(String(describing: model.unattendedSince))")
            try self.expect(model.pending <= self.options.highWatermark + self.maxChunk, "memory bound exceeded: \(model.pending)")
            if model.producer != nil && !model.paused {
                try self.expect(model.pending < self.options.highWatermark, "an unpaused producer over the high watermark")
            }
            if model.consumer != nil && model.inFlight == nil {
                try self.expect(model.pending == 0 && !model.producerEnded, "an idle consumer with something to deliver (would wait forever)")
            }
        }
    }

    // MARK: Wind-down

    /// Ends every channel the way an owner would, then checks that nothing is left behind.
    private mutating func windDown() throws(ModelViolation) {
        for id in self.ids where self.models[id]!.live {
            self.step += 1
            if !self.models[id]!.producerEnded {
                try self.requestRemoval(id)
            }
            var rounds = 0
            while self.models[id]!.live {
                rounds += 1
                try self.expect(rounds < 10_000, "wind-down of \(id) does not converge")
                if self.models[id]!.inFlight != nil {
                    try self.acknowledge(id, failing: false)
                } else {
                    try self.expect(self.models[id]!.consumer == nil, "an idle consumer on an ended channel")
                    try self.attachConsumer(id)
                }
                try self.checkInvariants()
            }
        }
        try self.tick(by: self.tombstoneTTL)
        try self.expect(self.registry.channelCount == 0, "channels left after wind-down: \(self.registry.channelCount)")
        try self.expect(self.registry.tombstoneCount == 0, "tombstones left after their TTL: \(self.registry.tombstoneCount)")
    }

    // MARK: Helpers

    /// The attendance clock as the model sees it: unattended = live, no consumer, no active producer.
    private mutating func noteAttendance(_ id: IOChannelID) {
        var model = self.models[id]!
        guard model.live else { return }
        if model.consumer == nil && model.producer == nil {
            model.unattendedSince = model.unattendedSince ?? self.now
        } else {
            model.unattendedSince = nil
        }
        self.models[id] = model
    }

    private mutating func expectNewGeneration(_ raw: UInt64) throws(ModelViolation) {
        try self.expect(raw > self.lastGeneration, "generation \(raw) not newer than \(self.lastGeneration)")
        self.lastGeneration = raw
    }

    /// Position-dependent bytes, so a duplicated, dropped or reordered byte changes the content.
    static func streamBytes(from offset: Int, count: Int) -> [UInt8] {
        (offset..<offset + count).map { UInt8(truncatingIfNeeded: (UInt64($0) &* 2_654_435_761) >> 11) }
    }

    private mutating func note(_ event: String) {
        self.trail.append("#\(self.step) \(event)")
        if self.trail.count > 12 {
            self.trail.removeFirst()
        }
    }

    private func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws(ModelViolation) {
        if !condition {
            throw self.violation(message())
        }
    }

    private func violation(_ message: String) -> ModelViolation {
        ModelViolation(description: "seed \(self.seed), step \(self.step): \(message)\n  last events:\n    " + self.trail.joined(separator: "\n    "))
    }
}
