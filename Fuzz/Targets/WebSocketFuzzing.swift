import ExecStreamCore
import NIOCore

/// RFC 6455 client frames as the RFC 8441 carrier decodes them, the header rules both carriers
/// apply, and the message assembly both share. Decoded frames obey the rules the decoder claims to
/// enforce; assembled messages stay within their limit.
enum WebSocketFuzzing {
    static func frames(_ bytes: [UInt8]) {
        let outcome = StreamSplitting.decodeBothWays(bytes) { WebSocketFrameDecoder(maxPayloadByteCount: 1 << 16) }
        var assembler = WebSocketMessageAssembler(maxMessageByteCount: 1 << 12)
        for frame in outcome.messages {
            precondition(frame.payload.readableBytes <= 1 << 16, "a WebSocket frame above the payload limit was accepted")
            if frame.opcode.isControl {
                precondition(frame.fin && frame.payload.readableBytes <= 125, "a fragmented or oversized control frame was accepted")
                continue
            }
            do {
                if let message = try assembler.receive(opcode: frame.opcode, fin: frame.fin, payload: frame.payload) {
                    precondition(message.payload.readableBytes <= 1 << 12, "a message above the limit was assembled")
                }
            } catch {
                break  // the connection fails here
            }
        }
        if bytes.count >= 2 {
            _ = try? WebSocketClientFrameRules.check(
                fin: bytes[0] & 0x80 != 0, reservedBits: bytes[0] & 0x70, opcode: bytes[0] & 0x0F,
                masked: bytes[1] & 0x80 != 0, payloadByteCount: Int(bytes[1] & 0x7F)
            )
        }
    }
}
