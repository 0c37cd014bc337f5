import ExecStreamCore
import NIOCore
import NIOHTTP1
import NIOPosix

/// A listener apart for Prometheus (`--metrics-listen`, config `metricsListen`): plain HTTP/1.1
/// that answers `GET /metrics` and `GET /healthz` and nothing else, so operators can scrape on an
/// address their network policy opens to the monitoring system alone. It reaches no process and
/// takes no token, like the health endpoints of the data plane. It stays open through the drain,
/// so a shutdown can be watched, and closes with the server.
enum MetricsListener {
    /// Binds `address` (TCP only); `exposition` renders the metrics for each scrape.
    /// Its connections go into `connections`, for the server to close when it stops.
    static func bind(
        _ address: ListenAddress,
        group: any EventLoopGroup,
        connections: ConnectionSet,
        exposition: @escaping @Sendable () -> String
    ) async throws(ServerError) -> (channel: any Channel, url: String) {
        guard case .tcp(let host, let port) = address else {
            throw ServerError(code: .invalidConfiguration, message: "--metrics-listen takes TCP addresses, not \(address)")
        }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                connections.insert(channel)
                return channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMapThrowing {
                    // A scraper that holds a connection idle for a minute is let go.
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(allTimeout: .seconds(60)), StreamIdleTimeout.Closer(), MetricsHTTPHandler(exposition: exposition),
                    ])
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            throw ServerError(code: .bindFailed, message: "cannot listen on \(address) for metrics: \(error)")
        }
        let bound = channel.localAddress?.port ?? port
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return (channel, "http://\(shownHost):\(bound)")
    }
}

/// Answers one request at a time: `/metrics` (Prometheus's text format) and `/healthz`; any other
/// path is 404 and any method but GET and HEAD is 405.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let exposition: @Sendable () -> String
    private var head: HTTPRequestHead?

    init(exposition: @escaping @Sendable () -> String) {
        self.exposition = exposition
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.respond(to: head, context: context)
        }
    }

    /// A request NIO cannot parse (an HTTP/2 preface among them) has had its 400 from NIO's
    /// error handler; the connection goes, as its answer says.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        var headers = HTTPHeaders()
        let status: HTTPResponseStatus
        let body: String
        switch (head.method, path) {
        case (.GET, "/metrics"), (.HEAD, "/metrics"):
            (status, body) = (.ok, self.exposition())
            headers.add(name: "Content-Type", value: StreamRouter.metricsContentType)
        case (.GET, "/healthz"), (.HEAD, "/healthz"):
            (status, body) = (.ok, "ok\n")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        case (.GET, _), (.HEAD, _):
            (status, body) = (.notFound, "this listener serves /metrics and /healthz only\n")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        default:
            (status, body) = (.methodNotAllowed, "GET or HEAD only\n")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            headers.add(name: "Allow", value: "GET, HEAD")
        }
        let bytes = ByteBuffer(string: body)
        headers.add(name: "Content-Length", value: String(bytes.readableBytes))
        let keepAlive = head.isKeepAlive
        if !keepAlive {
            headers.add(name: "Connection", value: "close")
        }
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
        }
        let written = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if !keepAlive {
            written.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        }
    }
}
