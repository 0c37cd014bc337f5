public import ExecStreamCore
public import NIOCore

/// RFC 6455 framing as a client speaks it: masked frames out, unmasked frames in. The server's
/// side is NIOWebSocket on a channel pipeline; a client on an HTTP/2 stream (RFC 8441) has no
/// pipeline, so it frames its bytes here.
public struct WebSocketClientFraming: Sendable {
    /// A frame's opcode (RFC 6455 §5.2): the core's.
    public typealias Opcode = WebSocketFrameOpcode

    /// A frame from the server.
    public struct Frame: Hashable, Sendable {
        public var fin: Bool
        public var opcode: Opcode
        public var payload: ByteBuffer
    }

    /// A server frame that breaks RFC 6455, or one larger than the client takes.
    public struct FramingError: Error, Hashable, Sendable, CustomStringConvertible {
        public var description: String

        public init(description: String) {
            self.description = description
        }
    }

    /// The largest frame the client takes from the server.
    public let maxFrameByteCount: Int
    private var buffer = ByteBuffer()

    public init(maxFrameByteCount: Int = 16 << 20) {
        self.maxFrameByteCount = maxFrameByteCount
    }

    /// One masked frame of `payload` (RFC 6455 §5.3: every client frame is masked).
    public static func frame(_ opcode: Opcode, _ payload: ByteBuffer, fin: Bool = true) -> ByteBuffer {
        var frame = ByteBuffer()
        frame.reserveCapacity(payload.readableBytes + 14)
        frame.writeInteger((fin ? 0x80 : 0) | opcode.rawValue)
        let length = payload.readableBytes
        switch length {
        case ..<126:
            frame.writeInteger(0x80 | UInt8(length))
        case ..<65536:
            frame.writeInteger(UInt8(0x80 | 126))
            frame.writeInteger(UInt16(length))
        default:
            frame.writeInteger(UInt8(0x80 | 127))
            frame.writeInteger(UInt64(length))
        }
        let mask = (0..<4).map { _ in UInt8.random(in: .min ... .max) }
        frame.writeBytes(mask)
        var index = 0
        for byte in payload.readableBytesView {
            frame.writeInteger(byte ^ mask[index & 3])
            index += 1
        }
        return frame
    }

    /// Takes bytes from the server.
    public mutating func receive(_ bytes: ByteBuffer) {
        var bytes = bytes
        self.buffer.writeBuffer(&bytes)
    }

    /// The next whole frame received, if there is one.
    public mutating func nextFrame() throws(FramingError) -> Frame? {
        var view = self.buffer
        guard let first = view.readInteger(as: UInt8.self), let second = view.readInteger(as: UInt8.self) else { return nil }
        guard first & 0x70 == 0 else { throw FramingError(description: "a server frame with reserved bits set") }
        guard let opcode = Opcode(rawValue: first & 0x0F) else { throw FramingError(description: "a server frame with unknown opcode \(first & 0x0F)") }
        guard second & 0x80 == 0 else { throw FramingError(description: "a masked server frame") }
        var length = Int(second & 0x7F)
        if length == 126 {
            guard let extended = view.readInteger(as: UInt16.self) else { return nil }
            length = Int(extended)
        } else if length == 127 {
            guard let extended = view.readInteger(as: UInt64.self) else { return nil }
            guard extended <= UInt64(self.maxFrameByteCount) else {
                throw FramingError(description: "a server frame of \(extended) bytes (at most \(self.maxFrameByteCount) are taken)")
            }
            length = Int(extended)
        }
        guard length <= self.maxFrameByteCount else {
            throw FramingError(description: "a server frame of \(length) bytes (at most \(self.maxFrameByteCount) are taken)")
        }
        guard let payload = view.readSlice(length: length) else { return nil }
        self.buffer = view
        if self.buffer.readerIndex >= 64 << 10 {
            self.buffer.discardReadBytes()
        }
        return Frame(fin: first & 0x80 != 0, opcode: opcode, payload: payload)
    }
}
