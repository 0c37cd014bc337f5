public import NIOCore

/// A WebSocket opcode (RFC 6455 §5.2).
public enum WebSocketFrameOpcode: UInt8, Hashable, Sendable {
    case continuation = 0x0
    case text = 0x1
    case binary = 0x2
    case close = 0x8
    case ping = 0x9
    case pong = 0xA

    /// Close, ping and pong: never fragmented, at most 125 bytes.
    public var isControl: Bool { self.rawValue & 0x8 != 0 }
}

/// What RFC 6455 §5.2 requires of every client frame's header, for both carriers (the decoder
/// below, and a validator after NIOWebSocket's decoder on HTTP/1.1): no reserved bit set (no
/// extension is negotiated), a known opcode, masked, and a control frame whole and at most 125
/// bytes. A violation fails the connection with close code 1002.
public enum WebSocketClientFrameRules {
    /// Checks a client frame's header; returns its opcode.
    public static func check(fin: Bool, reservedBits: UInt8, opcode rawOpcode: UInt8, masked: Bool, payloadByteCount: Int) throws(ExecStreamError)
        -> WebSocketFrameOpcode
    {
        guard reservedBits == 0 else {
            throw ExecStreamError(code: .malformedInput, message: "a WebSocket frame with reserved bits set (no extension was negotiated)")
        }
        guard let opcode = WebSocketFrameOpcode(rawValue: rawOpcode) else {
            throw ExecStreamError(code: .malformedInput, message: "unknown WebSocket opcode \(rawOpcode)")
        }
        guard masked else {
            throw ExecStreamError(code: .malformedInput, message: "a client WebSocket frame must be masked")
        }
        if opcode.isControl && (!fin || payloadByteCount > 125) {
            throw ExecStreamError(code: .malformedInput, message: "a WebSocket control frame must be whole and at most 125 bytes")
        }
        return opcode
    }
}

/// One WebSocket frame as received, its payload already unmasked.
public struct WebSocketFrameMessage: Hashable, Sendable {
    /// The last frame of its message.
    public var fin: Bool
    /// What it carries.
    public var opcode: WebSocketFrameOpcode
    /// The payload, unmasked.
    public var payload: ByteBuffer

    public init(fin: Bool, opcode: WebSocketFrameOpcode, payload: ByteBuffer) {
        self.fin = fin
        self.opcode = opcode
        self.payload = payload
    }
}

/// Reads client frames of RFC 6455 from a byte stream split anywhere: WebSocket over an HTTP/2
/// stream (RFC 8441) has no NIO pipeline to put NIOWebSocket's decoder in. Client frames must be
/// masked; reserved bits, unknown opcodes, fragmented or oversized control frames and payloads
/// above `maxPayloadByteCount` are `malformedInput` / `messageTooLarge`.
public struct WebSocketFrameDecoder: NIOSingleStepByteToMessageDecoder, Sendable {
    public typealias InboundOut = WebSocketFrameMessage

    /// The largest payload accepted.
    public let maxPayloadByteCount: Int

    public init(maxPayloadByteCount: Int = 16 << 20) {
        self.maxPayloadByteCount = maxPayloadByteCount
    }

    public mutating func decode(buffer: inout ByteBuffer) throws(ExecStreamError) -> WebSocketFrameMessage? {
        let start = buffer.readerIndex
        guard let first = buffer.getInteger(at: start, as: UInt8.self), let second = buffer.getInteger(at: start + 1, as: UInt8.self) else {
            return nil
        }
        let fin = first & 0x80 != 0
        // The header's own rules first (the length may not have arrived yet: checked below).
        _ = try WebSocketClientFrameRules.check(
            fin: true, reservedBits: first & 0x70, opcode: first & 0x0F, masked: second & 0x80 != 0, payloadByteCount: 0
        )
        var offset = 2
        var length = Int(second & 0x7F)
        switch length {
        case 126:
            guard let extended = buffer.getInteger(at: start + offset, as: UInt16.self) else { return nil }
            length = Int(extended)
            offset += 2
        case 127:
            guard let extended = buffer.getInteger(at: start + offset, as: UInt64.self) else { return nil }
            guard extended <= UInt64(self.maxPayloadByteCount) else {
                throw ExecStreamError(code: .messageTooLarge, message: "a WebSocket frame of \(extended) bytes exceeds the limit of \(self.maxPayloadByteCount)")
            }
            length = Int(extended)
            offset += 8
        default:
            break
        }
        let opcode = try WebSocketClientFrameRules.check(
            fin: fin, reservedBits: first & 0x70, opcode: first & 0x0F, masked: true, payloadByteCount: length
        )
        guard length <= self.maxPayloadByteCount else {
            throw ExecStreamError(code: .messageTooLarge, message: "a WebSocket frame of \(length) bytes exceeds the limit of \(self.maxPayloadByteCount)")
        }
        guard let mask = buffer.getBytes(at: start + offset, length: 4), buffer.readableBytes >= offset + 4 + length else { return nil }
        offset += 4
        var payload = buffer.getSlice(at: start + offset, length: length)!
        buffer.moveReaderIndex(forwardBy: offset + length)
        // Unmask in place in a buffer of our own (the slice shares storage with the read buffer).
        payload.withUnsafeMutableReadableBytes { bytes in
            for index in 0..<bytes.count {
                bytes[index] ^= mask[index & 3]
            }
        }
        return WebSocketFrameMessage(fin: fin, opcode: opcode, payload: payload)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws(ExecStreamError) -> WebSocketFrameMessage? {
        if let frame = try self.decode(buffer: &buffer) {
            return frame
        }
        guard buffer.readableBytes == 0 else {
            throw ExecStreamError(code: .malformedInput, message: "the stream ended inside a WebSocket frame")
        }
        return nil
    }
}

/// Writes server frames (unmasked, RFC 6455 §5.1).
public enum WebSocketFrameEncoder {
    /// Appends the header of a whole (FIN) frame of `payloadByteCount` bytes. Senders write the
    /// payload buffer after it as it is, without copying.
    public static func writeHeader(opcode: WebSocketFrameOpcode, payloadByteCount: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger(0x80 | opcode.rawValue)
        switch payloadByteCount {
        case 0...125:
            buffer.writeInteger(UInt8(payloadByteCount))
        case 126...0xFFFF:
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(payloadByteCount))
        default:
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(payloadByteCount))
        }
    }

    /// A close frame's payload: the status code, then a reason of at most 123 bytes.
    public static func closePayload(code: UInt16, reason: String = "") -> ByteBuffer {
        var payload = ByteBuffer()
        payload.writeInteger(code)
        payload.writeBytes(reason.utf8.prefix(123))
        return payload
    }
}
