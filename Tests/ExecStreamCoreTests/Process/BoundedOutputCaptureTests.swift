import ExecStreamCore
import NIOCore
import Testing

@Suite("ExecSync output capture")
struct BoundedOutputCaptureTests {
    @Test("everything up to the limit is kept exactly, with nothing dropped")
    func underTheLimit() {
        var capture = BoundedOutputCapture(streamName: "stdout", limit: 10)
        capture.append(ByteBuffer(string: "hello"))
        capture.append(ByteBuffer())
        capture.append(ByteBuffer(string: " wor"))
        capture.append(ByteBuffer(string: "l"))  // exactly 10
        let (bytes, dropped) = capture.result()
        #expect(String(buffer: bytes) == "hello worl")
        #expect(dropped == 0)
        #expect(!capture.isTruncated)
    }

    @Test("past the limit: the first bytes, then a one-line notice, together within the limit")
    func truncated() {
        var capture = BoundedOutputCapture(streamName: "stderr", limit: 100)
        for _ in 0..<50 {
            capture.append(ByteBuffer(string: "0123456789"))  // 500 bytes
            #expect(capture.heldByteCount <= 100, "memory stays bounded by the limit")
        }
        let (bytes, dropped) = capture.result()
        let text = String(buffer: bytes)
        #expect(bytes.readableBytes <= 100)
        let notice = "\n[execstream: stderr truncated: \(dropped) bytes dropped]\n"
        #expect(text.hasSuffix(notice))
        let kept = String(text.dropLast(notice.count))
        #expect(kept == String(String(repeating: "0123456789", count: 10).prefix(kept.count)), "the first bytes, in order")
        #expect(kept.count + dropped == 500, "every byte is either kept or counted")
        #expect(kept.count + notice.count == 100, "the notice uses the room it needs and no more")
    }

    @Test("a chunk that straddles the limit is split at it")
    func straddlingChunk() {
        var capture = BoundedOutputCapture(streamName: "stdout", limit: 1000)
        capture.append(ByteBuffer(repeating: 0x61, count: 990))
        capture.append(ByteBuffer(repeating: 0x62, count: 20))
        #expect(capture.heldByteCount == 1000)
        #expect(capture.droppedByteCount == 10)
    }

    @Test("16 MiB by default")
    func defaultLimit() {
        #expect(BoundedOutputCapture(streamName: "stdout").limit == 16 << 20)
    }

    @Test("a limit smaller than the notice still never exceeds the limit")
    func tinyLimit() {
        var capture = BoundedOutputCapture(streamName: "stdout", limit: 8)
        capture.append(ByteBuffer(string: "0123456789abcdef"))
        let (bytes, dropped) = capture.result()
        #expect(bytes.readableBytes <= 8)
        #expect(dropped == 16)
    }
}

@Suite("ExecSync output capture, cut to a smaller limit")
struct BoundedOutputCaptureResultLimitTests {
    @Test("a capture that fitted its own limit is cut with a notice that counts what was cut")
    func cutsKeptBytes() {
        var capture = BoundedOutputCapture(streamName: "stdout", limit: 1000)
        capture.append(ByteBuffer(repeating: 0x62, count: 800))
        let (bytes, dropped) = capture.result(limit: 100)
        #expect(bytes.readableBytes <= 100)
        let notice = "\n[execstream: stdout truncated: \(dropped) bytes dropped]\n"
        #expect(String(buffer: bytes) == String(repeating: "b", count: 100 - notice.utf8.count) + notice)
        #expect(dropped == 800 - (100 - notice.utf8.count))
    }

    @Test("a limit at or above what is held changes nothing")
    func noCut() {
        var capture = BoundedOutputCapture(streamName: "stderr", limit: 1000)
        capture.append(ByteBuffer(string: "abc"))
        #expect(capture.result(limit: 3).bytes == ByteBuffer(string: "abc"))
        #expect(capture.result(limit: 5000).droppedByteCount == 0)
    }
}
