import NIOCore

// # The IOChannel state machine
//
// One channel carries one standard stream of one process. It has at most one current producer
// (the process reader for stdout/stderr, a client for stdin) and at most one current consumer (a
// network stream for stdout/stderr, the process writer for stdin), joined by a bounded queue.
// No I/O happens here: every event returns the effects its owner carries out afterwards.
//
// The producer side decides the state:
//
//                 producerAttached                      producerClosed / removalRequested
//     ┌─────────┐ ───────────────▶ ┌───────────┐ ─────────────────────────────────▶ ┌──────────┐
//     │ created │                  │ producing │                                     │ draining │
//     └─────────┘ ◀─ ─ ─ ─ ─ ─ ─ ─ └───────────┘ ◀────┐                              └──────────┘
//          │            producerDetached │  ▲          │ producerAttached                  │
//          │                             ▼  │          │ (a newer producer preempts)       │ endOfStreamDelivered
//          │                    ┌──────────────────┐   │                                   ▼
//          │                    │ awaitingProducer │───┘                              ┌─────────┐
//          │                    └──────────────────┘                                  │ removed │
//          │   removalRequested (from created or awaitingProducer) ─▶ draining        └─────────┘
//          └── tick(now) past the linger TTL while unattended (any live state) ─────────────▲
//
// The consumer side lives inside every live state as `Endpoints`:
//
//   - no consumer, bytes queued          "buffered for reattach": the next attach gets them all
//   - consumer attached, nothing queued  idle; the next `produced` starts a delivery at once
//   - consumer attached, delivery out    waiting for `delivered` / `deliveryFailed`
//   - in-flight owner ≠ current consumer "preempt requested": a newer attach won at once; the old
//                                        consumer still reports its delivery, then the newer one
//                                        continues from the first byte the old one did not take
//
// Rules that make the guarantees of ARCHITECTURE.md hold:
//   - exactly one delivery is in flight; a failed or partial one returns its undelivered suffix
//     to the head of the queue, so bytes are delivered exactly once and in order;
//   - end of stream is itself a delivery, issued only when the producer has ended, the queue is
//     empty and nothing is in flight; the channel is removed when it is acknowledged;
//   - a zero-length write is ignored, never taken as end of stream;
//   - the producer is paused at the high watermark and resumed at the low one; nothing is dropped
//     except by the linger TTL, which reports how many bytes it dropped;
//   - "unattended" (no consumer and no active producer) starts the linger clock.

/// The state machine of one IOChannel. Owned by `IORegistryStateMachine`, which allocates
/// generations, keeps tombstones and looks channels up by id.
struct IOChannelStateMachine {
    private enum State {
        /// Registered; no producer has attached yet (the process may still be starting).
        /// Consumers may already attach and wait.
        case created(Endpoints)
        /// A producer is attached and writing.
        case producing(Producing)
        /// The producer left without ending the stream (a stdin client vanished, or an attach
        /// without stdin_once ended); a new producer may attach and continue.
        case awaitingProducer(Endpoints)
        /// The producer has ended (end of stream, or removal requested): queued bytes drain to
        /// consumers, then end of stream is delivered.
        case draining(Endpoints)
        /// End of stream reached a consumer, or the linger TTL expired. Terminal.
        case removed(IOChannelRemoval)
        /// Placeholder while a transition is under way, so the queue is never copied.
        case _modifying
    }

    /// The payload of `producing`.
    private struct Producing {
        /// The current producer.
        var producer: ProducerGeneration
        /// Whether the producer has been told to pause.
        var isPaused: Bool
        /// Queue and consumer side.
        var endpoints: Endpoints
    }

    /// A delivery handed to a consumer and not yet answered.
    private enum InFlight {
        /// Bytes, in order.
        case bytes(owner: ConsumerGeneration, chunks: [ByteBuffer], byteCount: Int)
        /// End of stream.
        case endOfStream(owner: ConsumerGeneration)

        var owner: ConsumerGeneration {
            switch self {
            case .bytes(let owner, _, _), .endOfStream(let owner):
                return owner
            }
        }

        var byteCount: Int {
            switch self {
            case .bytes(_, _, let byteCount):
                return byteCount
            case .endOfStream:
                return 0
            }
        }
    }

    /// The queue and the consumer side, present in every live state.
    private struct Endpoints {
        /// Chunks not yet handed to any consumer, oldest first. Never holds an empty chunk.
        var queue = CircularBuffer<ByteBuffer>()
        /// Total size of `queue`.
        var queuedByteCount = 0
        /// The current consumer.
        var consumer: ConsumerGeneration?
        /// The delivery out, if any; its owner may be an older, preempted consumer.
        var inFlight: InFlight?
        /// When the channel last became unattended; nil while it is attended.
        var unattendedSince: NIODeadline?
        /// Bytes consumers have acknowledged since the channel was registered: the stream offset
        /// of the first byte of the next delivery.
        var acknowledgedByteCount = 0

        /// Bytes the channel holds: queued plus in flight.
        var pendingByteCount: Int { self.queuedByteCount + (self.inFlight?.byteCount ?? 0) }

        mutating func enqueue(_ chunk: ByteBuffer) {
            self.queue.append(chunk)
            self.queuedByteCount += chunk.readableBytes
        }

        /// Starts the next delivery to the current consumer if it is idle and there is something
        /// to deliver. End of stream is delivered only when `producerEnded` and the queue is empty.
        mutating func startDelivery(producerEnded: Bool, maxBytes: Int) -> IOChannelDelivery? {
            guard let consumer = self.consumer, self.inFlight == nil else { return nil }
            if self.queue.isEmpty {
                guard producerEnded else { return nil }
                self.inFlight = .endOfStream(owner: consumer)
                return .endOfStream(consumer)
            }
            var chunks: [ByteBuffer] = []
            var byteCount = 0
            while let next = self.queue.first, chunks.isEmpty || byteCount + next.readableBytes <= maxBytes {
                chunks.append(self.queue.removeFirst())
                byteCount += next.readableBytes
            }
            self.queuedByteCount -= byteCount
            self.inFlight = .bytes(owner: consumer, chunks: chunks, byteCount: byteCount)
            return .bytes(consumer, chunks: chunks, byteCount: byteCount, streamOffset: self.acknowledgedByteCount)
        }

        /// Ends the delivery `owner` holds, of which the first `deliveredByteCount` bytes arrived;
        /// the rest goes back to the head of the queue. Bytes only.
        mutating func settleBytes(owner: ConsumerGeneration, deliveredByteCount: Int) -> IOChannelRejection? {
            guard let inFlight = self.inFlight, inFlight.owner == owner else { return .staleGeneration }
            switch inFlight {
            case .endOfStream:
                return .mismatchedAcknowledgement
            case .bytes(_, let chunks, let byteCount):
                guard deliveredByteCount >= 0, deliveredByteCount <= byteCount else {
                    return .mismatchedAcknowledgement
                }
                self.inFlight = nil
                self.acknowledgedByteCount += deliveredByteCount
                self.returnToHead(chunks, skipping: deliveredByteCount)
                return nil
            }
        }

        /// Puts back everything after the first `skipped` bytes of `chunks`, in order.
        private mutating func returnToHead(_ chunks: [ByteBuffer], skipping skipped: Int) {
            var toSkip = skipped
            var suffix: [ByteBuffer] = []
            for var chunk in chunks {
                if toSkip >= chunk.readableBytes {
                    toSkip -= chunk.readableBytes
                    continue
                }
                chunk.moveReaderIndex(forwardBy: toSkip)
                toSkip = 0
                suffix.append(chunk)
            }
            for chunk in suffix.reversed() {
                self.queue.prepend(chunk)
                self.queuedByteCount += chunk.readableBytes
            }
        }

        /// Records whether the channel is unattended: no consumer and no active producer.
        mutating func noteAttendance(producerActive: Bool, now: NIODeadline) {
            if self.consumer == nil && !producerActive {
                if self.unattendedSince == nil {
                    self.unattendedSince = now
                }
            } else {
                self.unattendedSince = nil
            }
        }

        func snapshot(phase: IOChannelPhase, producer: ProducerGeneration?, paused: Bool) -> IOChannelSnapshot {
            var endOfStreamInFlight = false
            if case .endOfStream = self.inFlight {
                endOfStreamInFlight = true
            }
            return IOChannelSnapshot(
                phase: phase,
                queuedByteCount: self.queuedByteCount,
                inFlightByteCount: self.inFlight?.byteCount ?? 0,
                endOfStreamInFlight: endOfStreamInFlight,
                consumer: self.consumer,
                inFlightOwner: self.inFlight?.owner,
                producer: producer,
                producerPaused: paused,
                unattendedSince: self.unattendedSince,
                acknowledgedByteCount: self.acknowledgedByteCount
            )
        }
    }

    /// The channel's limits and timers.
    let options: IOChannelOptions
    private var state: State

    init(options: IOChannelOptions, now: NIODeadline) {
        self.options = options
        var endpoints = Endpoints()
        endpoints.noteAttendance(producerActive: false, now: now)
        self.state = .created(endpoints)
    }

    /// A read-only view; nil once removed.
    var snapshot: IOChannelSnapshot? {
        switch self.state {
        case .created(let endpoints):
            return endpoints.snapshot(phase: .created, producer: nil, paused: false)
        case .producing(let producing):
            return producing.endpoints.snapshot(phase: .producing, producer: producing.producer, paused: producing.isPaused)
        case .awaitingProducer(let endpoints):
            return endpoints.snapshot(phase: .awaitingProducer, producer: nil, paused: false)
        case .draining(let endpoints):
            return endpoints.snapshot(phase: .draining, producer: nil, paused: false)
        case .removed:
            return nil
        case ._modifying:
            preconditionFailure("IOChannelStateMachine is in its placeholder state")
        }
    }

    // MARK: Producer events

    /// A producer attached (the process reader started, or a client began sending stdin).
    /// A newer producer preempts the current one.
    mutating func producerAttached(_ producer: ProducerGeneration, now: NIODeadline) -> OnProducerAttached {
        var effects = IOChannelEffects()
        switch self.state {
        case .created(var endpoints), .awaitingProducer(var endpoints):
            self.state = ._modifying
            endpoints.noteAttendance(producerActive: true, now: now)
            let paused = endpoints.pendingByteCount >= self.options.highWatermark
            effects.producerFlow = paused ? .pause : nil
            self.state = .producing(Producing(producer: producer, isPaused: paused, endpoints: endpoints))
            return .attached(producer, effects)
        case .producing(var producing):
            self.state = ._modifying
            effects.preemptedProducer = producing.producer
            effects.producerFlow = producing.isPaused ? .pause : nil
            producing.producer = producer
            self.state = .producing(producing)
            return .attached(producer, effects)
        case .draining:
            return .rejected(.producerClosed)
        case .removed:
            return .rejected(.channelRemoved)
        case ._modifying:
            preconditionFailure("IOChannelStateMachine is in its placeholder state")
        }
    }

    /// The producer read a chunk. An empty chunk changes nothing (it is not end of stream).
    mutating func produced(_ chunk: ByteBuffer, by producer: ProducerGeneration, now: NIODeadline) -> IOChannelOutcome {
        var producing: Producing
        switch self.currentProducing(producer) {
        case .current(let current):
            producing = current
        case .refused(let rejection):
            return .rejected(rejection)
        }
        guard chunk.readableBytes > 0 else { return .accepted(IOChannelEffects()) }
        self.state = ._modifying  // drop the state's reference so the queue is not copied
        var effects = IOChannelEffects()
        producing.endpoints.enqueue(chunk)
        effects.delivery = producing.endpoints.startDelivery(producerEnded: false, maxBytes: self.options.maxDeliveryBytes)
        if !producing.isPaused && producing.endpoints.pendingByteCount >= self.options.highWatermark {
            producing.isPaused = true
            effects.producerFlow = .pause
        }
        self.state = .producing(producing)
        return .accepted(effects)
    }

    /// The producer reached end of stream (the process closed its output, the client closed stdin).
    mutating func producerClosed(by producer: ProducerGeneration, now: NIODeadline) -> IOChannelOutcome {
        switch self.currentProducing(producer) {
        case .current(let producing):
            self.state = ._modifying
            return .accepted(self.beginDraining(producing.endpoints, stopping: nil, now: now))
        case .refused(let rejection):
            return .rejected(rejection)
        }
    }

    /// The producer went away without ending the stream; a new one may attach later.
    mutating func producerDetached(by producer: ProducerGeneration, now: NIODeadline) -> IOChannelOutcome {
        switch self.currentProducing(producer) {
        case .current(var producing):
            self.state = ._modifying
            producing.endpoints.noteAttendance(producerActive: false, now: now)
            self.state = .awaitingProducer(producing.endpoints)
            return .accepted(IOChannelEffects())
        case .refused(let rejection):
            return .rejected(rejection)
        }
    }

    /// Whether a producer event comes from the current producer.
    private enum ProducerCheck {
        /// It does; this is the `producing` payload.
        case current(Producing)
        /// It does not; refuse the event for this reason.
        case refused(IOChannelRejection)
    }

    /// The `producing` payload if `producer` is the current producer, else why its event is refused.
    private func currentProducing(_ producer: ProducerGeneration) -> ProducerCheck {
        switch self.state {
        case .producing(let producing):
            return producing.producer == producer ? .current(producing) : .refused(.staleGeneration)
        case .created, .awaitingProducer:
            return .refused(.staleGeneration)
        case .draining:
            return .refused(.producerClosed)
        case .removed:
            return .refused(.channelRemoved)
        case ._modifying:
            preconditionFailure("IOChannelStateMachine is in its placeholder state")
        }
    }

    /// The owner wants the channel gone (container removed, exec failed to start). The producer
    /// is stopped; queued bytes still drain to a consumer before end of stream.
    mutating func removalRequested(now: NIODeadline) -> IOChannelOutcome {
        switch self.state {
        case .created(let endpoints), .awaitingProducer(let endpoints):
            self.state = ._modifying
            return .accepted(self.beginDraining(endpoints, stopping: nil, now: now))
        case .producing(let producing):
            self.state = ._modifying
            return .accepted(self.beginDraining(producing.endpoints, stopping: producing.producer, now: now))
        case .draining:
            return .accepted(IOChannelEffects())
        case .removed:
            return .rejected(.channelRemoved)
        case ._modifying:
            preconditionFailure("IOChannelStateMachine is in its placeholder state")
        }
    }

    private mutating func beginDraining(_ endpoints: Endpoints, stopping producer: ProducerGeneration?, now: NIODeadline) -> IOChannelEffects {
        var endpoints = endpoints
        var effects = IOChannelEffects()
        effects.stoppedProducer = producer
        endpoints.noteAttendance(producerActive: false, now: now)
        effects.delivery = endpoints.startDelivery(producerEnded: true, maxBytes: self.options.maxDeliveryBytes)
        self.state = .draining(endpoints)
        return effects
    }

    // MARK: Consumer events

    /// A consumer attached. It becomes current at once; the previous consumer is preempted.
    mutating func consumerAttached(_ consumer: ConsumerGeneration, now: NIODeadline) -> OnConsumerAttached {
        if case .removed = self.state {
            return .endOfStream
        }
        let maxBytes = self.options.maxDeliveryBytes
        let effects = self.modifyEndpoints(now: now) { endpoints, producerEnded, effects in
            effects.preemptedConsumer = endpoints.consumer
            endpoints.consumer = consumer
            effects.delivery = endpoints.startDelivery(producerEnded: producerEnded, maxBytes: maxBytes)
            return nil
        }
        switch effects {
        case .accepted(let effects):
            return .attached(consumer, effects)
        case .rejected:
            preconditionFailure("attaching a consumer to a live channel cannot be rejected")
        }
    }

    /// The consumer `consumer` wrote the first `byteCount` bytes of its delivery. Fewer than the
    /// whole delivery (a partial pipe write) puts the rest back at the head and delivers it again.
    mutating func delivered(_ byteCount: Int, by consumer: ConsumerGeneration, now: NIODeadline) -> IOChannelOutcome {
        let maxBytes = self.options.maxDeliveryBytes
        return self.modifyEndpoints(now: now) { endpoints, producerEnded, effects in
            if let rejection = endpoints.settleBytes(owner: consumer, deliveredByteCount: byteCount) {
                return rejection
            }
            effects.delivery = endpoints.startDelivery(producerEnded: producerEnded, maxBytes: maxBytes)
            return nil
        }
    }

    /// The consumer `consumer` could not finish its delivery and is gone; the first
    /// `deliveredByteCount` bytes arrived, the rest go back to the head of the queue for the next
    /// consumer. For an end-of-stream delivery, `deliveredByteCount` is 0.
    mutating func deliveryFailed(by consumer: ConsumerGeneration, deliveredByteCount: Int, now: NIODeadline) -> IOChannelOutcome {
        let maxBytes = self.options.maxDeliveryBytes
        return self.modifyEndpoints(now: now) { endpoints, producerEnded, effects in
            guard let inFlight = endpoints.inFlight, inFlight.owner == consumer else { return .staleGeneration }
            switch inFlight {
            case .endOfStream:
                guard deliveredByteCount == 0 else { return .mismatchedAcknowledgement }
                endpoints.inFlight = nil
            case .bytes:
                if let rejection = endpoints.settleBytes(owner: consumer, deliveredByteCount: deliveredByteCount) {
                    return rejection
                }
            }
            if endpoints.consumer == consumer {
                endpoints.consumer = nil
            }
            effects.delivery = endpoints.startDelivery(producerEnded: producerEnded, maxBytes: maxBytes)
            return nil
        }
    }

    /// The consumer `consumer` left (its stream closed). A delivery it still holds counts as
    /// failed with nothing delivered.
    mutating func consumerDetached(_ consumer: ConsumerGeneration, now: NIODeadline) -> IOChannelOutcome {
        switch self.inFlightOwner {
        case .some(let owner) where owner == consumer:
            return self.deliveryFailed(by: consumer, deliveredByteCount: 0, now: now)
        case .some, .none:
            return self.modifyEndpoints(now: now) { endpoints, _, _ in
                guard endpoints.consumer == consumer else { return .staleGeneration }
                endpoints.consumer = nil
                return nil
            }
        }
    }

    /// The consumer `consumer` wrote end of stream: the channel is drained and removed. A newer
    /// consumer waiting behind it is finished at once.
    mutating func endOfStreamDelivered(by consumer: ConsumerGeneration, now: NIODeadline) -> IOChannelOutcome {
        switch self.state {
        case .draining(let endpoints):
            guard case .endOfStream(let owner) = endpoints.inFlight, owner == consumer else {
                return .rejected(endpoints.inFlight?.owner == consumer ? .mismatchedAcknowledgement : .staleGeneration)
            }
            var effects = IOChannelEffects()
            if let waiting = endpoints.consumer, waiting != consumer {
                effects.finishedConsumer = waiting
            }
            let removal = IOChannelRemoval(reason: .drained, droppedByteCount: 0)
            effects.removal = removal
            self.state = .removed(removal)
            return .accepted(effects)
        case .created(let endpoints), .awaitingProducer(let endpoints):
            return .rejected(endpoints.inFlight?.owner == consumer ? .mismatchedAcknowledgement : .staleGeneration)
        case .producing(let producing):
            return .rejected(producing.endpoints.inFlight?.owner == consumer ? .mismatchedAcknowledgement : .staleGeneration)
        case .removed:
            return .rejected(.channelRemoved)
        case ._modifying:
            preconditionFailure("IOChannelStateMachine is in its placeholder state")
        }
    }

    // MARK: Time

    /// Collects the channel if it has been unattended for longer than its linger TTL.
    mutating func tick(now: NIODeadline) -> IOChannelEffects? {
        let endpoints: Endpoints
        switch self.state {
        case .created(let live), .awaitingProducer(let live), .draining(let live):
            endpoints = live
        case .producing:
            return nil  // an active producer keeps the channel alive
        case .removed:
            return nil
        case ._modifying:
            preconditionFailure("IOChannelStateMachine is in its placeholder state")
        }
        guard let since = endpoints.unattendedSince, now >= since + self.options.lingerTTL else { return nil }
        var effects = IOChannelEffects()
        let removal = IOChannelRemoval(reason: .lingerExpired, droppedByteCount: endpoints.pendingByteCount)
        effects.removal = removal
        self.state = .removed(removal)
        return effects
    }

    // MARK: Helpers

    private var inFlightOwner: ConsumerGeneration? {
        self.snapshot?.inFlightOwner
    }

    /// Runs a consumer-side change on the endpoints of any live state, keeping the state, then
    /// applies the producer's flow control and the attendance clock. `body` returns a rejection to
    /// refuse the event (it must then leave the endpoints unchanged).
    private mutating func modifyEndpoints(
        now: NIODeadline,
        _ body: (inout Endpoints, _ producerEnded: Bool, inout IOChannelEffects) -> IOChannelRejection?
    ) -> IOChannelOutcome {
        var effects = IOChannelEffects()
        switch self.state {
        case .created(var endpoints):
            self.state = ._modifying
            let rejection = body(&endpoints, false, &effects)
            endpoints.noteAttendance(producerActive: false, now: now)
            self.state = .created(endpoints)
            return rejection.map { .rejected($0) } ?? .accepted(effects)
        case .awaitingProducer(var endpoints):
            self.state = ._modifying
            let rejection = body(&endpoints, false, &effects)
            endpoints.noteAttendance(producerActive: false, now: now)
            self.state = .awaitingProducer(endpoints)
            return rejection.map { .rejected($0) } ?? .accepted(effects)
        case .draining(var endpoints):
            self.state = ._modifying
            let rejection = body(&endpoints, true, &effects)
            endpoints.noteAttendance(producerActive: false, now: now)
            self.state = .draining(endpoints)
            return rejection.map { .rejected($0) } ?? .accepted(effects)
        case .producing(var producing):
            self.state = ._modifying
            let rejection = body(&producing.endpoints, false, &effects)
            producing.endpoints.noteAttendance(producerActive: true, now: now)
            if producing.isPaused && producing.endpoints.pendingByteCount <= self.options.lowWatermark {
                producing.isPaused = false
                effects.producerFlow = .resume
            }
            self.state = .producing(producing)
            return rejection.map { .rejected($0) } ?? .accepted(effects)
        case .removed:
            return .rejected(.channelRemoved)
        case ._modifying:
            preconditionFailure("IOChannelStateMachine is in its placeholder state")
        }
    }
}
