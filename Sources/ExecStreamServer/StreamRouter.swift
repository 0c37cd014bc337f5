import ExecStreamCore
import ExecStreamRemoteCommand
import ExecStreamHTTP1
import ExecStreamHTTP2
import GRPCCore
import NIOCore
import NIOHTTP1

/// Decides what serves each request of one connection: gRPC by content type (control calls only
/// where the listener serves the control plane), then the plain HTTP routes. There is exactly one
/// place that answers unknown paths: 404 "404 page not found", as the kubelet streaming library
/// does.
struct StreamRouter: Sendable {
    let grpc: GRPCHTTP2ServerTransport
    /// The streaming endpoint, its log lines naming this connection's peer.
    let streaming: StreamingEndpoint
    let enableBenchmarkRoutes: Bool
    /// Who is on this connection, and through which listener.
    let peer: ConnectionPeer

    init(grpc: GRPCHTTP2ServerTransport, streaming: StreamingEndpoint, enableBenchmarkRoutes: Bool, peer: ConnectionPeer) {
        var streaming = streaming
        streaming.logger[metadataKey: "peer"] = "\(peer.identity)"
        streaming.peer = "\(peer.identity)"
        self.grpc = grpc
        self.streaming = streaming
        self.enableBenchmarkRoutes = enableBenchmarkRoutes
        self.peer = peer
    }

    static let notFoundBody = "404 page not found\n"

    /// Routes one HTTP/2 request stream (on its event loop).
    func route(_ stream: HTTP2ServerStream) {
        let head = stream.head
        if head.headers[first: "content-type"]?.hasPrefix("application/grpc") == true {
            self.routeGRPC(stream)
            return
        }
        let path = head.pathWithoutQuery ?? ""
        if let (kind, token) = Self.streamingRoute(path) {
            self.streaming.serve(stream, kind: kind, token: token)
            return
        }
        switch (head.method, path) {
        case ("GET", "/healthz"), ("HEAD", "/healthz"):
            Self.respond(stream, status: 200, body: head.method == "HEAD" ? "" : "ok\n")
        case ("GET", "/metrics"):
            Self.respond(stream, status: 200, headers: ["content-type": Self.metricsContentType], body: self.metricsExposition)
        case ("GET", "/debug/bytes") where self.enableBenchmarkRoutes:
            let size = Self.queryValue("size", in: head.path ?? "").flatMap { Int($0) } ?? 0
            Self.streamBytes(stream, count: size)
        case ("GET", "/debug/registry") where self.enableBenchmarkRoutes:
            Self.respond(stream, status: 200, body: self.registryReport)
        case ("GET", "/debug/settled") where self.enableBenchmarkRoutes:
            self.respondWhenSettled(stream)
        default:
            Self.respond(stream, status: 404, body: Self.notFoundBody)
        }
    }

    /// The trust boundary for gRPC: a call the listener may not serve never reaches a handler.
    /// (A malformed path is left to the transport, which answers UNIMPLEMENTED.)
    private func routeGRPC(_ stream: HTTP2ServerStream) {
        guard let method = GRPCHTTP2ServerTransport.methodDescriptor(path: stream.head.pathWithoutQuery ?? "") else {
            self.grpc.accept(stream, transportSpecific: self.peer)
            return
        }
        switch self.peer.access.admit(service: method.service.fullyQualifiedService, method: method.method) {
        case .admitted:
            self.streaming.logger.debug("control call", metadata: ["method": "\(CommandLineLimits.displayed(method.fullyQualifiedMethod))"])
            self.grpc.accept(stream, transportSpecific: self.peer)
        case .refused(let message):
            self.streaming.logger.notice(
                "control call refused",
                metadata: ["method": "\(CommandLineLimits.displayed(method.fullyQualifiedMethod))", "listener": "\(self.peer.access)"]
            )
            self.grpc.refuse(stream, status: Status(code: .permissionDenied, message: message))
        }
    }

    /// `/exec/{token}`, `/attach/{token}` or `/portforward/{token}`: the endpoint kind and the token.
    static func streamingRoute(_ path: String) -> (StreamingRequestKind, String)? {
        for kind in StreamingRequestKind.allCases {
            let prefix = "/\(kind.rawValue)/"
            if path.hasPrefix(prefix), path.count > prefix.count, !path.dropFirst(prefix.count).contains("/") {
                return (kind, String(path.dropFirst(prefix.count)))
            }
        }
        return nil
    }

    /// `/debug/settled[?channels=N]`: answers once no session and no protocol adapter is alive
    /// and at most N IOChannels are (channels of vanished clients are collected after their
    /// linger), or after 15 s with what is left. A leak check waits for this event.
    private func respondWhenSettled(_ stream: HTTP2ServerStream) {
        let channelBound = Self.queryValue("channels", in: stream.head.path ?? "").flatMap { Int($0) } ?? Int.max
        let streaming = self.streaming
        let deadline = NIODeadline.now() + .seconds(15)
        stream.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(100)) { task in
            let channels = streaming.liveChannelCount
            let settled = LiveObjects.shared.isSettled && channels <= channelBound
            guard settled || NIODeadline.now() >= deadline else { return }
            task.cancel()
            let counts = LiveObjects.shared.current
            let body = "{\"settled\":\(settled),\"sessions\":\(counts[.sessions] ?? 0),\"adapters\":\(counts[.adapters] ?? 0),"
                + "\"channels\":\(channels)}\n"
            Self.respond(stream, status: 200, body: body)
        }
    }

    /// Prometheus's text exposition format.
    static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// `/metrics`: the server's metrics, its state gauges read now.
    private var metricsExposition: String {
        self.streaming.metrics.exposition(tokensInFlight: self.streaming.requests.count, channels: self.streaming.registry)
    }

    /// `/debug/registry`: live IOChannels, for leak checks (back at the baseline once sessions end).
    private var registryReport: String {
        "{\"channels\":\(self.streaming.liveChannelCount)}\n"
    }

    /// Answers an HTTP/1.1 request that no upgrade took; `refusal` is what the upgrade check
    /// decided about it, if it was a streaming request.
    func respond(toHTTP1 head: HTTPRequestHead, refusal: HTTPErrorResponse?) -> HTTP1FallbackHandler.Response {
        if let refusal {
            return HTTP1FallbackHandler.Response(status: HTTPResponseStatus(statusCode: refusal.status), body: refusal.body, headers: refusal.headers)
        }
        switch (head.method, head.uri.split(separator: "?").first.map(String.init)) {
        case (.GET, "/healthz"?):
            return HTTP1FallbackHandler.Response(status: .ok, body: "ok\n")
        case (.GET, "/metrics"?):
            return HTTP1FallbackHandler.Response(status: .ok, body: self.metricsExposition, contentType: Self.metricsContentType)
        case (.GET, "/debug/registry"?) where self.enableBenchmarkRoutes:
            return HTTP1FallbackHandler.Response(status: .ok, body: self.registryReport)
        default:
            return HTTP1FallbackHandler.Response(status: .notFound, body: Self.notFoundBody)
        }
    }

    /// Answers with an error before any streaming.
    static func respond(_ stream: HTTP2ServerStream, _ error: HTTPErrorResponse) {
        var headers = HTTP2Headers()
        for (name, value) in error.headers {
            headers.add(name: name, value: value)
        }
        Self.respond(stream, status: error.status, headers: headers, body: error.body)
    }

    /// Answers with a small plain-text body.
    static func respond(_ stream: HTTP2ServerStream, status: Int, headers extra: HTTP2Headers = HTTP2Headers(), body: String) {
        guard !body.isEmpty else {
            stream.sendResponseHead(status: status, headers: extra, endStream: true)
            return
        }
        // Routing runs on the connection's event loop: write in place, no task, no hops.
        var headers: HTTP2Headers = ["content-type": "text/plain; charset=utf-8", "content-length": String(body.utf8.count)]
        for field in extra {
            headers.add(name: field.name, value: field.value)
        }
        stream.sendResponseHead(status: status, headers: headers)
        _ = stream.writeOnEventLoop(ByteBuffer(string: body))
        stream.finish()
    }

    /// The benchmark route: `count` bytes from one preallocated buffer, with no copies, produced
    /// on the connection's event loop as process output will be.
    private static func streamBytes(_ stream: HTTP2ServerStream, count: Int) {
        stream.sendResponseHead(
            status: 200,
            headers: ["content-type": "application/octet-stream", "content-length": String(count)]
        )
        let block = ByteBuffer(repeating: 0x78, count: 256 << 10)
        var remaining = count
        func pump() {
            while remaining > 0 {
                let length = min(remaining, block.readableBytes)
                remaining -= length
                switch stream.writeOnEventLoop(block.getSlice(at: block.readerIndex, length: length)!) {
                case .writable:
                    continue
                case .aboveHighWatermark:
                    guard remaining > 0 else { break }
                    stream.whenWritable { pump() }
                    return
                case .closed:
                    return
                }
            }
            stream.finish()
        }
        pump()
    }

    private static func queryValue(_ name: String, in path: String) -> String? {
        guard let query = path.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.first.map(String.init) == name {
                return parts.count > 1 ? String(parts[1]) : ""
            }
        }
        return nil
    }
}
