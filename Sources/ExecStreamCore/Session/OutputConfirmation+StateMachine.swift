// # Output confirmation (resumable attach, server side)
//
// On a resumable native attach (PROTOCOLS.md §9, "Resumable attach") a byte counts as delivered
// only once the client says it holds it. The registry keeps one delivery in flight per channel;
// this machine holds that delivery until the client's acknowledge frames cover it, and when the
// stream ends early it tells the registry exactly which prefix the client confirmed, so the rest
// goes to the next attach (the same client, reconnected) and nothing is lost or sent twice to
// the user.
//
//                       sent(streamOffset, byteCount)
//          ┌──────┐ ─────────────────────────────────▶ ┌──────────────────────┐
//          │ idle │                                    │ awaitingConfirmation │ ── acknowledged(below end)
//          └──────┘ ◀───────────────────────────────── └──────────────────────┘ ◀─┘  (partial: remembered)
//             ▲      acknowledged(≥ end) → .delivered              │
//             └──────────── abandoned → confirmed prefix ──────────┘
//
// An acknowledgement beyond the last byte ever sent is a protocol violation (the client claims
// bytes it cannot have); one below what was already confirmed is stale and ignored.

/// What the owner does after the client acknowledged an offset.
public enum OnOutputAcknowledged: Hashable, Sendable {
    /// Nothing yet: the delivery is not wholly confirmed (or there is none).
    case none
    /// The client holds the whole delivery: answer the registry's `delivered` with this count.
    case delivered(byteCount: Int)
    /// The client acknowledged bytes it was never sent: end the stream with this error.
    case protocolViolation(message: String)
}

/// Holds one registry delivery of one output stream until the client confirms it. No I/O.
public struct OutputConfirmationStateMachine: Sendable {
    private enum State: Sendable {
        /// No delivery waits for confirmation.
        case idle
        /// A delivery was written to the client, which has confirmed `confirmedByteCount` of it.
        case awaitingConfirmation(Awaiting)
    }

    /// The payload of `awaitingConfirmation`.
    private struct Awaiting: Sendable {
        /// Stream offset of the delivery's first byte.
        var streamOffset: UInt64
        /// Its size.
        var byteCount: Int
        /// Bytes of it the client has confirmed.
        var confirmedByteCount: Int

        var endOffset: UInt64 { self.streamOffset + UInt64(self.byteCount) }
    }

    private var state: State = .idle
    /// The stream offset after the last byte ever written to the client.
    private var sentEndOffset: UInt64?

    public init() {}

    /// True while a delivery waits for the client.
    public var isAwaitingConfirmation: Bool {
        switch self.state {
        case .idle: return false
        case .awaitingConfirmation: return true
        }
    }

    /// The delivery of `byteCount` bytes at `streamOffset` was written to the client.
    public mutating func sent(streamOffset: UInt64, byteCount: Int) {
        switch self.state {
        case .idle:
            precondition(byteCount > 0, "a delivery carries bytes")
            self.state = .awaitingConfirmation(Awaiting(streamOffset: streamOffset, byteCount: byteCount, confirmedByteCount: 0))
            self.sentEndOffset = streamOffset + UInt64(byteCount)
        case .awaitingConfirmation:
            preconditionFailure("the registry has one delivery in flight per channel")
        }
    }

    /// The client holds every byte before `offset`.
    public mutating func acknowledged(offset: UInt64) -> OnOutputAcknowledged {
        let sentEndOffset = self.sentEndOffset ?? 0
        guard offset <= sentEndOffset else {
            return .protocolViolation(message: "acknowledged offset \(offset) is beyond the last byte sent (\(sentEndOffset))")
        }
        switch self.state {
        case .idle:
            return .none
        case .awaitingConfirmation(var awaiting):
            if offset >= awaiting.endOffset {
                self.state = .idle
                return .delivered(byteCount: awaiting.byteCount)
            }
            if offset > awaiting.streamOffset {
                awaiting.confirmedByteCount = max(awaiting.confirmedByteCount, Int(offset - awaiting.streamOffset))
                self.state = .awaitingConfirmation(awaiting)
            }
            return .none
        }
    }

    /// The stream is ending: the bytes of the delivery the client confirmed, for the registry's
    /// `deliveryFailed` (the rest goes back to the channel); nil when nothing was awaiting.
    public mutating func abandoned() -> Int? {
        switch self.state {
        case .idle:
            return nil
        case .awaitingConfirmation(let awaiting):
            self.state = .idle
            return awaiting.confirmedByteCount
        }
    }
}
