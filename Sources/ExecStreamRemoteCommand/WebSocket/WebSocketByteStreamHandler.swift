import NIOCore
import NIOWebSocket

/// A WebSocket as a byte carrier, for a protocol that is a byte stream of its own (SPDY
/// port-forward tunnelled in WebSocket, `SPDY/3.1+portforward.k8s.io`): data message payloads go
/// up the pipeline as bytes, where message boundaries mean nothing, and bytes written down it
/// leave as one binary message per flush. Pings are answered; a close frame is answered with
/// 1000 and closes the channel; closing the channel sends close 1000 first. Handlers above it
/// are the ones an upgraded TCP connection carrying the same protocol gets.
package final class WebSocketByteStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = WebSocketFrame

    /// Bytes written since the last flush, with their promises: one message per flush.
    private var pending: ByteBuffer?
    private var pendingPromise: EventLoopPromise<Void>?
    /// The close frame has been sent.
    private var closing = false

    package init() {}

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .text, .continuation:
            context.fireChannelRead(self.wrapInboundOut(frame.unmaskedData))
        case .ping:
            context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            context.channel.close(promise: nil)
        case .pong:
            break
        default:
            break
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var bytes = self.unwrapOutboundIn(data)
        if self.pending == nil {
            self.pending = bytes
        } else {
            self.pending!.writeBuffer(&bytes)
        }
        if let promise {
            if let pendingPromise = self.pendingPromise {
                pendingPromise.futureResult.cascade(to: promise)
            } else {
                self.pendingPromise = promise
            }
        }
    }

    func flush(context: ChannelHandlerContext) {
        if let bytes = self.pending {
            let promise = self.pendingPromise
            self.pending = nil
            self.pendingPromise = nil
            context.write(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: bytes)), promise: promise)
        }
        context.flush()
    }

    /// The end of the carried protocol is the WebSocket's close 1000, then the connection's.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, !self.closing, context.channel.isActive else {
            context.close(mode: mode, promise: promise)
            return
        }
        self.closing = true
        self.flush(context: context)
        var code = context.channel.allocator.buffer(capacity: 2)
        code.write(webSocketErrorCode: .normalClosure)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: code))).whenComplete { _ in
            bound.value.close(mode: .all, promise: promise)
        }
    }
}
