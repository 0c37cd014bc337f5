import ExecStreamCore
import NIOCore
import Testing

@Suite("WebSocket frames (RFC 6455) for RFC 8441 streams")
struct WebSocketFrameCodecTests {
    @Test("RFC 6455 §5.7: a masked \"Hello\" from a client, fed one byte at a time")
    func maskedHello() throws {
        let bytes: [UInt8] = [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
        var decoder = WebSocketFrameDecoder()
        var buffer = ByteBuffer()
        var frames: [WebSocketFrameMessage] = []
        for byte in bytes {
            buffer.writeInteger(byte)
            while let frame = try decoder.decode(buffer: &buffer) {
                frames.append(frame)
            }
        }
        #expect(frames == [WebSocketFrameMessage(fin: true, opcode: .text, payload: ByteBuffer(string: "Hello"))])
        #expect(buffer.readableBytes == 0)
    }

    @Test("16- and 64-bit lengths")
    func extendedLengths() throws {
        for length in [126, 65535, 65536, 200_000] {
            var buffer = ByteBuffer()
            buffer.writeInteger(UInt8(0x82))
            if length <= 65535 {
                buffer.writeInteger(UInt8(0x80 | 126))
                buffer.writeInteger(UInt16(length))
            } else {
                buffer.writeInteger(UInt8(0x80 | 127))
                buffer.writeInteger(UInt64(length))
            }
            buffer.writeBytes([0, 0, 0, 0])
            buffer.writeRepeatingByte(7, count: length)
            var decoder = WebSocketFrameDecoder()
            let frame = try #require(try decoder.decode(buffer: &buffer))
            #expect(frame.payload.readableBytes == length)
            #expect(frame.opcode == .binary)
        }
    }

    @Test(
        "client mistakes are errors",
        arguments: [
            ([0x82, 0x01, 0x41], "must be masked"),
            ([0xC2, 0x80, 0, 0, 0, 0], "reserved bits"),
            ([0x83, 0x80, 0, 0, 0, 0], "unknown WebSocket opcode"),
            ([0x09, 0x80, 0, 0, 0, 0], "control frame"),
            ([0x89, 0xFE, 0x00, 0x7E, 0, 0, 0, 0], "control frame"),
        ] as [([UInt8], String)]
    )
    func mistakes(bytes: [UInt8], expected: String) {
        var decoder = WebSocketFrameDecoder()
        var buffer = ByteBuffer(bytes: bytes)
        let error = #expect(throws: ExecStreamError.self) { _ = try decoder.decode(buffer: &buffer) }
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
    }

    @Test("a frame above the limit is refused from its header, before its payload arrives")
    func tooLarge() {
        var decoder = WebSocketFrameDecoder(maxPayloadByteCount: 1000)
        var buffer = ByteBuffer(bytes: [0x82, 0x80 | 126, 0x03, 0xE9])
        let error = #expect(throws: ExecStreamError.self) { _ = try decoder.decode(buffer: &buffer) }
        #expect(error?.code == .messageTooLarge)
    }

    @Test("server headers: 7-bit, 16-bit and 64-bit lengths, never masked")
    func serverHeaders() {
        var buffer = ByteBuffer()
        WebSocketFrameEncoder.writeHeader(opcode: .binary, payloadByteCount: 5, into: &buffer)
        #expect(Array(buffer.readableBytesView) == [0x82, 0x05])
        buffer.clear()
        WebSocketFrameEncoder.writeHeader(opcode: .text, payloadByteCount: 300, into: &buffer)
        #expect(Array(buffer.readableBytesView) == [0x81, 126, 0x01, 0x2C])
        buffer.clear()
        WebSocketFrameEncoder.writeHeader(opcode: .binary, payloadByteCount: 70_000, into: &buffer)
        #expect(Array(buffer.readableBytesView) == [0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70])
        #expect(Array(WebSocketFrameEncoder.closePayload(code: 1000).readableBytesView) == [0x03, 0xE8])
    }
}
