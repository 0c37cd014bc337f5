public import NIOCore

/// Identifies one consumer attachment (a network stream reading a channel) across its life.
///
/// Generations are allocated by the registry, strictly increasing, and never reused, so an event
/// from a consumer that has been preempted or has left can always be told apart from the current one.
public struct ConsumerGeneration: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The raw counter value.
    public var rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "consumer#\(self.rawValue)" }
}

/// Identifies one producer attachment (a process reader, or a client writing stdin) across its life.
public struct ProducerGeneration: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The raw counter value.
    public var rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "producer#\(self.rawValue)" }
}

/// Per-channel limits and timers.
public struct IOChannelOptions: Hashable, Sendable {
    /// Pending bytes (queued plus in flight) at or above which the producer is told to pause.
    public var highWatermark: Int
    /// Pending bytes at or below which a paused producer is told to resume.
    public var lowWatermark: Int
    /// The most bytes one delivery hands to a consumer (at least one whole chunk is always handed).
    public var maxDeliveryBytes: Int
    /// How long a channel may sit with no consumer and no active producer before it is collected.
    public var lingerTTL: TimeAmount

    /// 1 MiB high and 256 KiB low watermark, 256 KiB deliveries, 5 minutes of linger.
    public init(
        highWatermark: Int = 1 << 20,
        lowWatermark: Int = 256 << 10,
        maxDeliveryBytes: Int = 256 << 10,
        lingerTTL: TimeAmount = .minutes(5)
    ) {
        precondition(highWatermark > 0 && lowWatermark >= 0 && lowWatermark < highWatermark, "watermarks must satisfy 0 <= low < high")
        precondition(maxDeliveryBytes > 0, "deliveries must be allowed to carry bytes")
        self.highWatermark = highWatermark
        self.lowWatermark = lowWatermark
        self.maxDeliveryBytes = maxDeliveryBytes
        self.lingerTTL = lingerTTL
    }
}

/// Something the owner must hand to a consumer now. Exactly one delivery per channel is in flight
/// at a time; the consumer's owner answers it with `delivered`, `endOfStreamDelivered` or
/// `deliveryFailed`.
public enum IOChannelDelivery: Hashable, Sendable {
    /// Write these chunks, in order, to the consumer. `byteCount` is their total size;
    /// `streamOffset` is where the first byte sits in the channel's stream (the bytes consumers had
    /// acknowledged before), which resuming clients use to drop what they already have.
    case bytes(ConsumerGeneration, chunks: [ByteBuffer], byteCount: Int, streamOffset: Int)
    /// The producer has finished and every byte has been delivered: end the consumer's stream.
    case endOfStream(ConsumerGeneration)
}

/// A signal to the producer about the pace of its reads.
public enum ProducerFlowSignal: Hashable, Sendable {
    /// Stop reading from the source: pending bytes reached the high watermark.
    case pause
    /// Read again: pending bytes fell to the low watermark.
    case resume
}

/// Why a channel was removed.
public enum IOChannelRemovalReason: Hashable, Sendable {
    /// The producer finished and end of stream reached a consumer after the last byte.
    case drained
    /// Nobody consumed the channel within its linger TTL; what was queued is dropped.
    case lingerExpired
}

/// A channel leaving the registry. A tombstone stays behind for a while.
public struct IOChannelRemoval: Hashable, Sendable {
    /// Why it was removed.
    public var reason: IOChannelRemovalReason
    /// Bytes that never reached any consumer: always 0 for `.drained`.
    public var droppedByteCount: Int

    public init(reason: IOChannelRemovalReason, droppedByteCount: Int) {
        self.reason = reason
        self.droppedByteCount = droppedByteCount
    }
}

/// Everything an event asks the owner to do, to be carried out after the lock is released.
///
/// Fields are independent; any combination can appear (a newer attach can preempt one consumer and
/// start a delivery to itself; a removal request can stop the producer and deliver end of stream).
public struct IOChannelEffects: Hashable, Sendable {
    /// Bytes or end of stream to hand to a consumer now.
    public var delivery: IOChannelDelivery?
    /// A consumer that lost its place to a newer attach: tell it so and end its stream. If it has a
    /// delivery in flight it must still report how that delivery ended.
    public var preemptedConsumer: ConsumerGeneration?
    /// A consumer that must be ended with end of stream at once, without acknowledgement: it was
    /// waiting on a channel whose end of stream was just delivered to an older consumer.
    public var finishedConsumer: ConsumerGeneration?
    /// A producer that lost its place to a newer producer attach: stop accepting its writes.
    public var preemptedProducer: ProducerGeneration?
    /// A producer that must stop reading for good: the channel is closing or gone.
    public var stoppedProducer: ProducerGeneration?
    /// A change of pace for the current producer.
    public var producerFlow: ProducerFlowSignal?
    /// The channel left the registry with this event.
    public var removal: IOChannelRemoval?

    /// No effects.
    public init() {}

    /// True when the owner has nothing to do.
    public var isEmpty: Bool { self == IOChannelEffects() }
}

/// Why the registry refused an event. None of these changes any state.
public enum IOChannelRejection: Hashable, Sendable {
    /// No channel has this id (never registered, or its tombstone has expired).
    case notFound
    /// The channel has been removed; only its tombstone is left.
    case channelRemoved
    /// The event comes from a producer or consumer that is no longer current, or has nothing in
    /// flight. Expected and harmless for preempted endpoints.
    case staleGeneration
    /// The producer side has ended (end of stream or removal requested): nothing more is accepted.
    case producerClosed
    /// The acknowledgement does not match the delivery in flight: more bytes than it carried,
    /// bytes for an end of stream, or end of stream for bytes.
    case mismatchedAcknowledgement
}

/// The answer to most registry events.
public enum IOChannelOutcome: Hashable, Sendable {
    /// The event was applied; carry out the effects.
    case accepted(IOChannelEffects)
    /// The event was refused and changed nothing.
    case rejected(IOChannelRejection)
}

/// The answer to `producerAttached`.
public enum OnProducerAttached: Hashable, Sendable {
    /// The new producer is current. `effects.producerFlow == .pause` means it must start paused.
    case attached(ProducerGeneration, IOChannelEffects)
    /// The producer may not attach.
    case rejected(IOChannelRejection)
}

/// The answer to `consumerAttached`.
public enum OnConsumerAttached: Hashable, Sendable {
    /// The new consumer is current at once; any previous consumer is in `effects.preemptedConsumer`.
    case attached(ConsumerGeneration, IOChannelEffects)
    /// The channel has already ended and drained (its tombstone is there): end the consumer's stream now.
    case endOfStream
    /// No such channel.
    case notFound
}

/// The answer to `register`.
public enum OnRegister: Hashable, Sendable {
    /// The channel exists now, in the created state.
    case registered
    /// A live channel already has this id; nothing changed.
    case alreadyExists
}

/// Where a channel is in its life, for metrics, logs and tests.
public enum IOChannelPhase: Hashable, Sendable {
    /// Registered; no producer has attached yet.
    case created
    /// A producer is attached and may write.
    case producing
    /// The producer left without ending the stream; a new one may attach.
    case awaitingProducer
    /// The producer has ended; queued bytes drain, then end of stream.
    case draining
}

/// A read-only view of one live channel.
public struct IOChannelSnapshot: Hashable, Sendable {
    /// Where the channel is in its life.
    public var phase: IOChannelPhase
    /// Bytes queued and not yet handed to any consumer.
    public var queuedByteCount: Int
    /// Bytes handed to a consumer and not yet acknowledged.
    public var inFlightByteCount: Int
    /// True while end of stream has been handed to a consumer and not yet acknowledged.
    public var endOfStreamInFlight: Bool
    /// The current consumer, if any.
    public var consumer: ConsumerGeneration?
    /// The consumer that owns the delivery in flight (may be a preempted one), if any.
    public var inFlightOwner: ConsumerGeneration?
    /// The current producer, if one is attached.
    public var producer: ProducerGeneration?
    /// True while the producer has been told to pause.
    public var producerPaused: Bool
    /// When the channel became unattended (no consumer, no active producer), if it is.
    public var unattendedSince: NIODeadline?
    /// Bytes consumers have acknowledged so far: the stream offset of the first byte of the next
    /// delivery (and, while one is in flight, of its first byte). Resuming clients use it to drop
    /// bytes they already have.
    public var acknowledgedByteCount: Int = 0

    /// Bytes producers have written into the channel so far (acknowledged, in flight or queued):
    /// the stream offset the next produced byte will have. A resuming stdin client sends on from
    /// here.
    public var receivedByteCount: Int { self.acknowledgedByteCount + self.inFlightByteCount + self.queuedByteCount }
}

/// What a registry holds at one moment, summed over its live channels.
public struct IORegistryStatistics: Hashable, Sendable {
    /// Live channels.
    public var channelCount = 0
    /// Bytes the channels hold: queued for a consumer, or handed to one and not yet acknowledged.
    public var bufferedByteCount = 0
    /// Producers told to pause (their channel is above its high watermark).
    public var pausedProducerCount = 0

    public init() {}
}
