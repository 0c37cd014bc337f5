import ExecStreamClient
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

/// The client's WebSocket framing against NIOWebSocket, the implementation the server uses: what
/// one side writes the other reads, at every length boundary.
@Suite("WebSocket client framing, against NIOWebSocket")
struct WebSocketClientFramingTests {
    static let lengths = [0, 1, 125, 126, 127, 65535, 65536, 200_000]

    @Test("frames written here are masked and read by NIOWebSocket's decoder", arguments: lengths)
    func clientFramesDecode(length: Int) throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)))
        let payload = ByteBuffer(bytes: (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try channel.writeInbound(WebSocketClientFraming.frame(.binary, payload))
        let frame = try #require(try channel.readInbound(as: WebSocketFrame.self))
        #expect(frame.opcode == .binary && frame.fin)
        #expect(frame.maskKey != nil, "every client frame is masked")
        #expect(frame.unmaskedData == payload)
        _ = try channel.finish()
    }

    @Test("frames NIOWebSocket's encoder writes are read here, however they are split", arguments: lengths)
    func serverFramesDecode(length: Int) throws {
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        let payload = ByteBuffer(bytes: (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try channel.writeOutbound(WebSocketFrame(fin: true, opcode: .binary, data: payload))
        try channel.writeOutbound(WebSocketFrame(fin: true, opcode: .connectionClose, data: ByteBuffer(integer: UInt16(1000))))
        var wire = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) {
            wire.writeBuffer(&part)
        }
        var framing = WebSocketClientFraming(maxFrameByteCount: 1 << 20)
        var frames: [WebSocketClientFraming.Frame] = []
        // One byte at a time: a frame is returned only once it is whole.
        while let byte = wire.readSlice(length: 1) {
            framing.receive(byte)
            while let frame = try framing.nextFrame() {
                frames.append(frame)
            }
        }
        #expect(frames.map(\.opcode) == [.binary, .close])
        #expect(frames.first?.payload == payload)
        #expect(frames.last?.payload == ByteBuffer(integer: UInt16(1000)))
        _ = try channel.finish()
    }

    @Test("a server frame that breaks RFC 6455, or is too large, is an error", arguments: [
        ([0xC2, 0x00], "a server frame with reserved bits set"),
        ([0x83, 0x00], "a server frame with unknown opcode 3"),
        ([0x82, 0x81, 0, 0, 0, 0, 0x61], "a masked server frame"),
        ([0x82, 0x7F, 0, 0, 0, 0, 0, 0x10, 0, 1], "a server frame of 1048577 bytes (at most 1048576 are taken)"),
    ] as [([UInt8], String)])
    func malformed(bytes: [UInt8], message: String) {
        var framing = WebSocketClientFraming(maxFrameByteCount: 1 << 20)
        framing.receive(ByteBuffer(bytes: bytes))
        #expect(throws: WebSocketClientFraming.FramingError(description: message)) { try framing.nextFrame() }
    }
}
