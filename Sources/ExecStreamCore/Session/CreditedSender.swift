public import NIOCore

/// The sender's side of containerd's credit flow control (PROTOCOLS.md §8): the receiver grants
/// credit with `WindowUpdate`, and the sender may send that many more bytes of `Data`, no more.
///
/// It holds one registry delivery at a time and cuts it into messages that fit the credit, so the
/// owner can answer the registry with exactly the number of bytes that left: all of them once the
/// delivery is sent, or the prefix sent so far when the stream ends early (the rest goes to the
/// next consumer). No I/O.
public struct CreditedSender: Sendable {
    /// Why a grant was refused.
    public enum GrantError: Error, Hashable, Sendable {
        /// A `WindowUpdate` of zero or less.
        case notPositive(Int32)
    }

    /// Bytes the receiver still allows.
    public private(set) var credit: Int64 = 0
    /// What is left of the delivery, oldest first.
    private var unsent = CircularBuffer<ByteBuffer>()
    /// Size of the delivery being sent, 0 when there is none.
    public private(set) var deliveryByteCount = 0
    /// Bytes of that delivery already cut into messages.
    public private(set) var sentByteCount = 0

    public init() {}

    /// True while a delivery has bytes not yet sent.
    public var hasUnsentBytes: Bool { !self.unsent.isEmpty }

    /// True while a delivery is held (sent or not).
    public var holdsDelivery: Bool { self.deliveryByteCount > 0 }

    /// The receiver granted `update` more bytes.
    public mutating func grant(_ update: Int32) throws(GrantError) {
        guard update > 0 else { throw .notPositive(update) }
        self.credit += Int64(update)
    }

    /// Takes a registry delivery. Only one at a time: the previous one must have been completed.
    public mutating func take(_ chunks: [ByteBuffer], byteCount: Int) {
        precondition(!self.holdsDelivery, "one delivery at a time")
        self.unsent = CircularBuffer(chunks.filter { $0.readableBytes > 0 })
        self.deliveryByteCount = byteCount
        self.sentByteCount = 0
    }

    /// The next message to send: at most `maxBytes`, at most the credit, from one chunk (slices
    /// share storage). Nil when the credit is spent or nothing is left.
    public mutating func nextMessage(maxBytes: Int) -> ByteBuffer? {
        guard self.credit > 0, var head = self.unsent.first else { return nil }
        let length = Int(min(Int64(min(maxBytes, head.readableBytes)), self.credit))
        let message = head.readSlice(length: length)!
        if head.readableBytes == 0 {
            self.unsent.removeFirst()
        } else {
            self.unsent[self.unsent.startIndex] = head
        }
        self.credit -= Int64(length)
        self.sentByteCount += length
        return message
    }

    /// Once every byte of the delivery is sent: its size, for the registry's `delivered`; the
    /// sender is empty again. Nil while bytes are left.
    public mutating func completeDelivery() -> Int? {
        guard self.holdsDelivery, self.unsent.isEmpty else { return nil }
        let byteCount = self.deliveryByteCount
        self.deliveryByteCount = 0
        self.sentByteCount = 0
        return byteCount
    }

    /// The stream is ending with the delivery unfinished: the bytes already sent, for the
    /// registry's `deliveryFailed`; nil if no delivery is held.
    public mutating func abandonDelivery() -> Int? {
        guard self.holdsDelivery else { return nil }
        let sent = self.sentByteCount
        self.unsent.removeAll()
        self.deliveryByteCount = 0
        self.sentByteCount = 0
        return sent
    }
}
