import ExecStreamCore
import NIOCore
import NIOEmbedded
import NIOWebSocket

/// RFC 6455 client frames as the server reads them on both carriers: NIOWebSocket's decoder (in a
/// channel, as on an upgraded HTTP/1.1 connection or an `HTTP2StreamChannel`), then the RFC 6455
/// rules `WebSocketFrameValidator` applies, then the message assembly the session handler does.
/// The same bytes split anywhere decode to the same frames; a frame the rules accept obeys them;
/// assembled messages stay within their limit.
enum WebSocketFuzzing {
    /// A decoded frame, comparable.
    private struct Frame: Equatable {
        var fin: Bool
        var reservedBits: UInt8
        var opcode: UInt8
        var masked: Bool
        var payload: [UInt8]

        init(_ frame: WebSocketFrame) {
            self.fin = frame.fin
            self.reservedBits = (frame.rsv1 ? 0x40 : 0) | (frame.rsv2 ? 0x20 : 0) | (frame.rsv3 ? 0x10 : 0)
            self.opcode = UInt8(webSocketOpcode: frame.opcode)
            self.masked = frame.maskKey != nil
            self.payload = Array(frame.unmaskedData.readableBytesView)
        }
    }

    static let maxFrameByteCount = 1 << 16

    static func frames(_ bytes: [UInt8]) {
        let whole = self.decode([bytes[...]])
        let split = self.decode(StreamSplitting.pieces(of: bytes))
        precondition(whole.frames == split.frames && whole.failed == split.failed, "a stream split into pieces decoded differently from the same stream whole")
        var assembler = WebSocketMessageAssembler(maxMessageByteCount: 1 << 12)
        for frame in whole.frames {
            precondition(frame.payload.count <= Self.maxFrameByteCount, "a WebSocket frame above the payload limit was accepted")
            let opcode: WebSocketFrameOpcode
            do {
                opcode = try WebSocketClientFrameRules.check(
                    fin: frame.fin, reservedBits: frame.reservedBits, opcode: frame.opcode, masked: frame.masked, payloadByteCount: frame.payload.count
                )
            } catch {
                break  // the validator fails the connection with 1002 here
            }
            precondition(frame.masked && frame.reservedBits == 0, "an unmasked frame or one with reserved bits passed the rules")
            if opcode.isControl {
                precondition(frame.fin && frame.payload.count <= 125, "a fragmented or oversized control frame passed the rules")
                continue
            }
            do {
                if let message = try assembler.receive(opcode: opcode, fin: frame.fin, payload: ByteBuffer(bytes: frame.payload)) {
                    precondition(message.payload.readableBytes <= 1 << 12, "a message above the limit was assembled")
                }
            } catch {
                break  // the connection fails here (1002, 1007 or 1009)
            }
        }
    }

    /// The frames NIOWebSocket's decoder reads from `pieces`, in a channel, and whether it failed.
    private static func decode(_ pieces: [ArraySlice<UInt8>]) -> (frames: [Frame], failed: Bool) {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        try! channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: Self.maxFrameByteCount)))
        var frames: [Frame] = []
        var failed = false
        for piece in pieces where !failed {
            do {
                try channel.writeInbound(ByteBuffer(bytes: piece))
            } catch {
                failed = true  // the frames decoded before the error are still read below
            }
            while let frame = try? channel.readInbound(as: WebSocketFrame.self) {
                frames.append(Frame(frame))
            }
        }
        return (frames, failed)
    }
}
