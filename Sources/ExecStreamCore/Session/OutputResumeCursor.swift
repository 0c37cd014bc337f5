public import NIOCore

/// The client's place in one output stream of a resumable attach (PROTOCOLS.md §9, "Resumable
/// attach"): each data frame follows a position frame naming its stream offset, and a reconnected
/// stream may repeat bytes the client already has (they were on the wire when the connection
/// dropped, unconfirmed). The cursor passes on each byte once, in order. No I/O.
public struct OutputResumeCursor: Hashable, Sendable {
    /// The stream offset after the last byte passed on; nil before the first data frame.
    public private(set) var nextOffset: UInt64?
    /// Bytes the stream skipped past the cursor: another client's attach took them. Zero while
    /// this client is the only one attaching.
    public private(set) var skippedByteCount: UInt64 = 0
    /// Bytes received again and dropped.
    public private(set) var repeatedByteCount: UInt64 = 0
    /// The offset the next data frame starts at (from the last position frame, or the end of
    /// the previous frame).
    private var frameOffset: UInt64?
    /// The offset after the last data frame received on the current connection: what to
    /// acknowledge (never beyond what the server sent on this connection).
    public private(set) var acknowledgeableOffset: UInt64?

    public init() {}

    /// A new connection: nothing of it has been received yet.
    public mutating func connectionStarted() {
        self.frameOffset = nil
        self.acknowledgeableOffset = nil
    }

    /// The server's position frame: the next data frame starts at `offset`.
    public mutating func position(_ offset: UInt64) {
        self.frameOffset = offset
    }

    /// A data frame: returns the part not passed on before (nil if it is all repeated).
    public mutating func received(_ payload: ByteBuffer) -> ByteBuffer? {
        let start = self.frameOffset ?? self.nextOffset ?? 0
        let end = start + UInt64(payload.readableBytes)
        self.frameOffset = end
        self.acknowledgeableOffset = end
        guard let next = self.nextOffset else {
            self.nextOffset = end
            return payload.readableBytes > 0 ? payload : nil
        }
        if start > next {
            self.skippedByteCount += start - next
        }
        guard end > next else {
            self.repeatedByteCount += UInt64(payload.readableBytes)
            return nil
        }
        let repeated = next > start ? Int(next - start) : 0
        self.repeatedByteCount += UInt64(repeated)
        self.nextOffset = end
        return payload.getSlice(at: payload.readerIndex + repeated, length: payload.readableBytes - repeated)
    }
}
