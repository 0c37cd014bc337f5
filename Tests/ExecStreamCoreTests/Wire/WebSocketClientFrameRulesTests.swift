import ExecStreamCore
import Testing

@Suite("RFC 6455 rules for client frames, on both carriers")
struct WebSocketClientFrameRulesTests {
    @Test("a masked data or control frame within the rules passes, with its opcode")
    func accepted() throws {
        #expect(try WebSocketClientFrameRules.check(fin: true, reservedBits: 0, opcode: 0x2, masked: true, payloadByteCount: 70_000) == .binary)
        #expect(try WebSocketClientFrameRules.check(fin: false, reservedBits: 0, opcode: 0x1, masked: true, payloadByteCount: 5) == .text)
        #expect(try WebSocketClientFrameRules.check(fin: true, reservedBits: 0, opcode: 0x0, masked: true, payloadByteCount: 0) == .continuation)
        #expect(try WebSocketClientFrameRules.check(fin: true, reservedBits: 0, opcode: 0x9, masked: true, payloadByteCount: 125) == .ping)
    }

    @Test(
        "client mistakes are errors (close 1002)",
        arguments: [
            (true, 0x00, 0x2, false, 1, "must be masked"),
            (true, 0x40, 0x2, true, 0, "reserved bits"),
            (true, 0x10, 0x2, true, 0, "reserved bits"),
            (true, 0x00, 0x3, true, 0, "unknown WebSocket opcode"),
            (true, 0x00, 0xB, true, 0, "unknown WebSocket opcode"),
            (false, 0x00, 0x9, true, 0, "control frame"),
            (true, 0x00, 0x8, true, 126, "control frame"),
        ] as [(Bool, UInt8, UInt8, Bool, Int, String)]
    )
    func mistakes(fin: Bool, reservedBits: UInt8, opcode: UInt8, masked: Bool, payloadByteCount: Int, expected: String) {
        let error = #expect(throws: ExecStreamError.self) {
            _ = try WebSocketClientFrameRules.check(fin: fin, reservedBits: reservedBits, opcode: opcode, masked: masked, payloadByteCount: payloadByteCount)
        }
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
    }
}
