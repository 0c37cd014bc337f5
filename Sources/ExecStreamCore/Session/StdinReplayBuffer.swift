public import NIOCore

/// The client's stdin on a resumable attach (PROTOCOLS.md §9, "Resumable attach"): bytes stay
/// here until the server's stdin window frame says the container's stdin channel has them, so a
/// connection that drops loses none; the next connection sends on from the offset the server
/// names, so none arrives twice. The server's window also bounds what is sent ahead. No I/O.
///
/// Offsets are the channel's stream offsets. The first window frame ever received places the
/// client's first byte; until then bytes only queue.
public struct StdinReplayBuffer: Sendable {
    /// Bytes not yet known to be in the channel, oldest first.
    private var pending = CircularBuffer<ByteBuffer>()
    /// Their total size.
    public private(set) var pendingByteCount = 0
    /// Stream offset of the first pending byte; nil until the first window frame.
    private var pendingOffset: UInt64?
    /// Stream offset of the next byte to send on the current connection; nil until the
    /// connection's first window frame.
    private var sendOffset: UInt64?
    /// How far the server lets the client send.
    private var limit: UInt64 = 0
    /// The user ended stdin: once every byte is sent, send a close frame.
    public private(set) var isEnded = false
    /// A close frame went out on the current connection.
    private var closeSent = false
    /// The server said stdin is closed for good: nothing more is sent.
    public private(set) var isClosedByServer = false

    public init() {}

    /// The user's next stdin bytes.
    public mutating func append(_ bytes: ByteBuffer) {
        precondition(!self.isEnded, "stdin was ended")
        guard bytes.readableBytes > 0, !self.isClosedByServer else { return }
        self.pending.append(bytes)
        self.pendingByteCount += bytes.readableBytes
    }

    /// The user ended stdin.
    public mutating func end() {
        self.isEnded = true
    }

    /// A new connection: nothing is sent on it before its first window frame.
    public mutating func connectionStarted() {
        self.sendOffset = nil
        self.limit = 0
        self.closeSent = false
    }

    /// The server's stdin window: the channel holds every byte before `taken`; the client may
    /// send up to `limit`. The first window of a connection is where sending starts again.
    public mutating func window(taken: UInt64, limit: UInt64) {
        let start = self.pendingOffset ?? taken
        if taken > start {
            self.dropPending(Int(min(taken - start, UInt64(self.pendingByteCount))))
        }
        self.pendingOffset = max(start, taken)
        if self.sendOffset.map({ $0 < self.pendingOffset! }) ?? true {
            self.sendOffset = self.pendingOffset
        }
        self.limit = max(self.limit, limit)
    }

    /// The server closed stdin (the process's stdin is closed): drop what is pending.
    public mutating func closedByServer() {
        self.isClosedByServer = true
        self.dropPending(self.pendingByteCount)
    }

    /// The next bytes to send on this connection, within the window; nil if none may go now.
    public mutating func nextSend(maxBytes: Int) -> ByteBuffer? {
        guard !self.isClosedByServer, let pendingOffset = self.pendingOffset, let sendOffset = self.sendOffset, sendOffset < self.limit else {
            return nil
        }
        var skip = Int(sendOffset - pendingOffset)
        let allowed = Int(min(UInt64(maxBytes), self.limit - sendOffset))
        for chunk in self.pending {
            if skip >= chunk.readableBytes {
                skip -= chunk.readableBytes
                continue
            }
            let length = min(chunk.readableBytes - skip, allowed)
            self.sendOffset = sendOffset + UInt64(length)
            return chunk.getSlice(at: chunk.readerIndex + skip, length: length)
        }
        return nil
    }

    /// Whether to send the close frame now: stdin was ended, every byte has been sent on this
    /// connection, and no close went out on it yet. Marks it sent.
    public mutating func takeCloseToSend() -> Bool {
        guard self.isEnded, !self.closeSent, !self.isClosedByServer, let pendingOffset = self.pendingOffset, let sendOffset = self.sendOffset,
            sendOffset == pendingOffset + UInt64(self.pendingByteCount)
        else { return false }
        self.closeSent = true
        return true
    }

    private mutating func dropPending(_ byteCount: Int) {
        var remaining = byteCount
        while remaining > 0, var head = self.pending.first {
            let taken = min(remaining, head.readableBytes)
            head.moveReaderIndex(forwardBy: taken)
            remaining -= taken
            self.pendingByteCount -= taken
            if head.readableBytes == 0 {
                self.pending.removeFirst()
            } else {
                self.pending[self.pending.startIndex] = head
            }
        }
        if let offset = self.pendingOffset {
            self.pendingOffset = offset + UInt64(byteCount)
        }
    }
}
