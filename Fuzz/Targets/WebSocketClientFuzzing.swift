import ExecStreamClient
import NIOCore

/// RFC 6455 server frames as the CLI reads them (`WebSocketClientFraming`, for port-forward): the
/// same bytes split anywhere give the same frames and the same verdict; no frame outgrows the
/// limit; a frame re-framed by the client's encoder (masked) carries the same payload.
enum WebSocketClientFuzzing {
    static let maxFrameByteCount = 1 << 16

    static func frames(_ bytes: [UInt8]) {
        let whole = self.decode([bytes])
        for frame in whole.frames {
            precondition(frame.payload.readableBytes <= self.maxFrameByteCount, "a frame over the limit was returned")
            let masked = WebSocketClientFraming.frame(frame.opcode, frame.payload, fin: frame.fin)
            precondition(masked.readableBytes >= frame.payload.readableBytes + 6, "a client frame without its mask")
        }
        for split in Set([1, bytes.count / 2, bytes.count - 1]) where split > 0 && split < bytes.count {
            let parts = self.decode([Array(bytes[..<split]), Array(bytes[split...])])
            precondition(parts.frames == whole.frames && parts.failed == whole.failed, "a split changed what the framing read")
        }
    }

    private static func decode(_ parts: [[UInt8]]) -> (frames: [WebSocketClientFraming.Frame], failed: Bool) {
        var framing = WebSocketClientFraming(maxFrameByteCount: self.maxFrameByteCount)
        var frames: [WebSocketClientFraming.Frame] = []
        for part in parts {
            framing.receive(ByteBuffer(bytes: part))
            do {
                while let frame = try framing.nextFrame() {
                    frames.append(frame)
                }
            } catch {
                return (frames, true)
            }
        }
        return (frames, false)
    }
}
