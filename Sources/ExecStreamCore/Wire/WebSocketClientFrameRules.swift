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

/// What RFC 6455 §5.2 requires of every client frame's header, which NIOWebSocket's decoder reads
/// but does not enforce (the server's validator applies it after the decoder, on both carriers):
/// no reserved bit set (no extension is negotiated), a known opcode, masked, and a control frame
/// whole and at most 125 bytes. A violation fails the connection with close code 1002.
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
