import ExecStreamCore
import NIOCore
import NIOWebSocket

/// RFC 6455's rules for client frames on an upgraded HTTP/1.1 connection, where NIOWebSocket's
/// decoder reads the frames but does not enforce them: a frame with a reserved bit, an unknown
/// opcode, no mask, or a fragmented or oversized control frame fails the connection with close
/// code 1002 (§7.4.1) before anything reads it. The rules are `WebSocketClientFrameRules`, which
/// the RFC 8441 decoder applies too.
package final class WebSocketFrameValidator: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private var failed = false

    package init() {}

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.failed else { return }
        let frame = self.unwrapInboundIn(data)
        let reservedBits: UInt8 = (frame.rsv1 ? 0x40 : 0) | (frame.rsv2 ? 0x20 : 0) | (frame.rsv3 ? 0x10 : 0)
        do {
            _ = try WebSocketClientFrameRules.check(
                fin: frame.fin,
                reservedBits: reservedBits,
                opcode: UInt8(webSocketOpcode: frame.opcode),
                masked: frame.maskKey != nil,
                payloadByteCount: frame.length
            )
        } catch {
            self.failed = true
            var payload = context.channel.allocator.buffer(capacity: 2)
            payload.write(webSocketErrorCode: .protocolError)
            let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)
            let channel = context.channel
            context.writeAndFlush(self.wrapOutboundOut(close)).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        context.fireChannelRead(data)
    }
}
