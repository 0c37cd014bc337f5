public import NIOCore
public import NIOHTTP1

/// Answers plain HTTP/1.1 requests on the streaming port. Upgrades (WebSocket, SPDY/3.1) are
/// served by handlers installed before this one in later versions; everything that reaches this
/// handler gets a complete HTTP/1.1 response from `respond`, with keep-alive as the client asked.
public final class HTTP1FallbackHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPServerRequestPart
    public typealias OutboundOut = HTTPServerResponsePart

    /// A response: status, content type and body.
    public struct Response: Sendable {
        /// The status.
        public var status: HTTPResponseStatus
        /// The body, sent with `Content-Length`.
        public var body: String
        /// The `Content-Type`.
        public var contentType: String
        /// More headers (`Retry-After`, say).
        public var headers: [(String, String)]

        public init(status: HTTPResponseStatus, body: String, contentType: String = "text/plain; charset=utf-8", headers: [(String, String)] = []) {
            self.status = status
            self.body = body
            self.contentType = contentType
            self.headers = headers
        }
    }

    private let respond: @Sendable (HTTPRequestHead) -> Response
    private var head: HTTPRequestHead?
    private var closeWhenIdle = false

    public init(respond: @escaping @Sendable (HTTPRequestHead) -> Response) {
        self.respond = respond
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break  // request bodies are read and dropped
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            let response = self.respond(head)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: response.contentType)
            headers.add(name: "Content-Length", value: String(response.body.utf8.count))
            for (name, value) in response.headers {
                headers.add(name: name, value: value)
            }
            if !head.isKeepAlive || self.closeWhenIdle {
                headers.add(name: "Connection", value: "close")
            }
            let keepAlive = head.isKeepAlive && !self.closeWhenIdle
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: response.status, headers: headers))), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: response.body)))), promise: nil)
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive {
                    loopBound.value.close(promise: nil)
                }
            }
        }
    }
}

extension HTTP1FallbackHandler {
    /// A graceful shutdown: close now if no request is in progress, else after its response.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        if self.head == nil {
            context.close(promise: nil)
        } else {
            self.closeWhenIdle = true
        }
    }
}

@available(*, unavailable)
extension HTTP1FallbackHandler: Sendable {}
