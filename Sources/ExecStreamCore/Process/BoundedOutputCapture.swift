public import NIOCore

/// Captures one output stream of an ExecSync call in at most `limit` bytes of memory.
///
/// The first bytes are kept. Past the limit, later bytes are counted and dropped; the result then
/// ends with a one-line notice saying how many were dropped, and the notice fits inside the limit
/// (kept bytes are trimmed to make room), so a response never grows past it.
public struct BoundedOutputCapture: Sendable {
    /// The most bytes held, and the most bytes `result` returns.
    public let limit: Int
    /// The stream's name for the notice ("stdout", "stderr").
    public let streamName: String
    private var kept: ByteBuffer
    /// Bytes that did not fit.
    public private(set) var droppedByteCount = 0

    /// - Parameter limit: 16 MiB by default, as CRI runtimes cap ExecSync output.
    public init(streamName: String, limit: Int = 16 << 20) {
        precondition(limit >= 0, "a capture limit cannot be negative")
        self.limit = limit
        self.streamName = streamName
        self.kept = ByteBuffer()
    }

    /// Bytes held in memory now; never more than `limit`.
    public var heldByteCount: Int { self.kept.readableBytes }

    /// Whether bytes were dropped.
    public var isTruncated: Bool { self.droppedByteCount > 0 }

    /// Adds a chunk read from the process.
    public mutating func append(_ chunk: ByteBuffer) {
        let room = self.limit - self.kept.readableBytes
        if chunk.readableBytes <= room {
            var chunk = chunk
            self.kept.writeBuffer(&chunk)
        } else {
            if room > 0 {
                self.kept.writeImmutableBuffer(chunk.getSlice(at: chunk.readerIndex, length: room)!)
            }
            self.droppedByteCount += chunk.readableBytes - max(room, 0)
        }
    }

    /// What the caller returns: every byte if nothing was dropped; otherwise the first bytes and
    /// the notice, together no longer than `limit`. The notice's own bytes, and any kept bytes
    /// trimmed to make room for it, count as dropped in the notice.
    public func result() -> (bytes: ByteBuffer, droppedByteCount: Int) {
        self.result(limit: self.limit)
    }

    /// As `result()`, in at most `limit` bytes (no more than the capture's own limit): what does
    /// not fit is dropped and counted as if the capture had been that small.
    public func result(limit: Int) -> (bytes: ByteBuffer, droppedByteCount: Int) {
        let limit = max(0, min(limit, self.limit))
        guard self.isTruncated || self.kept.readableBytes > limit else { return (self.kept, 0) }
        var trimmed = 0
        var notice = self.notice(dropped: self.droppedByteCount)
        // Trimming kept bytes to fit the notice changes the count in it: settle on a fixed point.
        while true {
            let keep = max(0, limit - notice.utf8.count)
            let newTrimmed = max(0, self.kept.readableBytes - keep)
            if newTrimmed == trimmed {
                break
            }
            trimmed = newTrimmed
            notice = self.notice(dropped: self.droppedByteCount + trimmed)
        }
        var bytes = self.kept.getSlice(at: self.kept.readerIndex, length: self.kept.readableBytes - trimmed)!
        bytes.writeBytes(notice.utf8.prefix(limit - bytes.readableBytes))
        return (bytes, self.droppedByteCount + trimmed)
    }

    private func notice(dropped: Int) -> String {
        "\n[execstream: \(self.streamName) truncated: \(dropped) bytes dropped]\n"
    }
}
