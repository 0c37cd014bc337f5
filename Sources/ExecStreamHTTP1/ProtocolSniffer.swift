import ExecStreamCore
public import NIOCore

/// Looks at the first bytes of a connection and installs the right protocol stack: prior-knowledge
/// HTTP/2 (h2c) when they are the HTTP/2 connection preface, HTTP/1.1 otherwise. Both are served
/// on the same port. Bytes that start like the preface (`PRI `) but are not it get an HTTP/1.1
/// 400 and a close here: an HTTP/1 parser would wait on them forever. A connection that sends
/// nothing decisive within `timeout` is closed.
public final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    /// The HTTP/2 client connection preface (RFC 9113 §3.4).
    public static let http2Preface = ConnectionPreface.http2

    /// Which protocol the connection speaks.
    public enum Detected: Sendable {
        /// HTTP/2 with prior knowledge.
        case http2
        /// HTTP/1.x (including upgrade requests).
        case http1
    }

    private let timeout: TimeAmount
    private let configure: (Detected, ChannelHandlerContext) throws -> Void
    private var buffered: ByteBuffer?
    private var timer: Scheduled<Void>?
    private var decided = false

    /// - Parameters:
    ///   - timeout: how long to wait for the first decisive bytes.
    ///   - configure: installs the handlers for the detected protocol after this one (on the
    ///     event loop, through `context.pipeline.syncOperations`).
    public init(timeout: TimeAmount = .seconds(30), configure: @escaping (Detected, ChannelHandlerContext) throws -> Void) {
        self.timeout = timeout
        self.configure = configure
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.timeout) {
            loopBound.value.close(promise: nil)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.decided else {
            context.fireChannelRead(data)
            return
        }
        var incoming = self.unwrapInboundIn(data)
        if self.buffered == nil {
            self.buffered = incoming
        } else {
            self.buffered!.writeBuffer(&incoming)
        }
        let detected: Detected
        switch ConnectionPreface.classify(self.buffered!.readableBytesView) {
        case .undecided:
            return  // a prefix of the preface so far: wait for more
        case .http2:
            detected = .http2
        case .http1:
            detected = .http1
        case .malformedHTTP2Preface:
            self.rejectMalformedPreface(context: context)
            return
        }
        self.decided = true
        self.timer?.cancel()
        do {
            try self.configure(detected, context)
        } catch {
            context.close(promise: nil)
            return
        }
        let buffer = self.buffered!
        self.buffered = nil
        context.fireChannelRead(self.wrapInboundOut(buffer))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func rejectMalformedPreface(context: ChannelHandlerContext) {
        self.decided = true
        self.timer?.cancel()
        self.buffered = nil
        let body = "malformed HTTP/2 connection preface\n"
        let response = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: response))).whenComplete { _ in
            loopBound.value.close(promise: nil)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension ProtocolSniffer: Sendable {}
