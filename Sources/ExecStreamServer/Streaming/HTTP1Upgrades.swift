import ExecStreamCore
import Foundation
import ExecStreamHTTP1
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The HTTP/1.1 side of a connection: WebSocket upgrades on the streaming routes, and plain
/// answers (health, 404, and every refused upgrade) from the fallback handler.
///
/// The upgrade check runs the same checks as the HTTP/2 endpoint, in the same order: the token
/// (404), an upgrade at all (400), the subprotocol (403), then a session slot (429, token
/// unspent); only then is the token spent. A refusal is remembered for the connection's fallback
/// handler, which sends it as the request's answer.
enum HTTP1Upgrades {
    /// What the upgrade check decided about the request in progress (on the connection's loop).
    final class Decision {
        var accepted: (PreparedSession, KubernetesChannelProtocol)?
        var acceptedSPDY: (PreparedSession, SPDYRemoteCommandProtocol)?
        var acceptedPortForward: (PreparedPortForward, KubernetesChannelProtocol)?
        var acceptedSPDYPortForward: PreparedPortForward?
        var acceptedSPDYTunnel: PreparedPortForward?
        var refusal: HTTPErrorResponse?
    }

    /// A refused SPDY upgrade: NIO passes the request on to the fallback, which answers it.
    struct Refused: Error {}

    /// Sets up the HTTP/1.1 pipeline of one connection.
    static func configure(
        _ pipeline: ChannelPipeline.SynchronousOperations,
        channel: any Channel,
        router: StreamRouter
    ) throws {
        let decision = NIOLoopBound(Decision(), eventLoop: channel.eventLoop)
        let fallback = NIOLoopBound(
            HTTP1FallbackHandler { head in
                defer { decision.value.refusal = nil }
                return router.respond(toHTTP1: head, refusal: Self.refusal(for: head, router: router, decided: decision.value.refusal))
            },
            eventLoop: channel.eventLoop
        )
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: 16 << 20,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                channel.eventLoop.makeSucceededFuture(Self.shouldUpgrade(head, router: router, decision: decision.value))
            },
            upgradePipelineHandler: { channel, _ in
                if let prepared = decision.value.acceptedSPDYTunnel {
                    decision.value.acceptedSPDYTunnel = nil
                    return channel.pipeline.syncOperations.removeHandler(fallback.value).flatMapThrowing {
                        try channel.pipeline.syncOperations.addHandlers(StreamIdleTimeout.handlers(router.streaming.policy))
                        try channel.pipeline.syncOperations.addHandler(
                            SPDYOverWebSocketHandler(
                                prepared: prepared,
                                logger: router.streaming.logger,
                                creationTimeout: router.streaming.policy.streamCreationTimeout
                            )
                        )
                    }
                }
                if let (prepared, channelProtocol) = decision.value.acceptedPortForward {
                    decision.value.acceptedPortForward = nil
                    return channel.pipeline.syncOperations.removeHandler(fallback.value).flatMapThrowing {
                        let operations = channel.pipeline.syncOperations
                        try operations.addHandlers(StreamIdleTimeout.handlers(router.streaming.policy))
                        try operations.addHandler(
                            NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 4096, maxAccumulatedFrameSize: 16 << 20)
                        )
                        try operations.addHandler(
                            PortForwardWebSocketHandler(prepared: prepared, channelProtocol: channelProtocol, logger: router.streaming.logger)
                        )
                    }
                }
                guard let (prepared, channelProtocol) = decision.value.accepted else {
                    return channel.eventLoop.makeFailedFuture(ExecStreamError(code: .internalError, message: "an upgrade without a prepared session"))
                }
                decision.value.accepted = nil
                // The fallback speaks HTTP: it goes before the first frame can reach it.
                return channel.pipeline.syncOperations.removeHandler(fallback.value).flatMapThrowing {
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandlers(StreamIdleTimeout.handlers(router.streaming.policy))
                    try operations.addHandler(
                        NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 4096, maxAccumulatedFrameSize: 16 << 20)
                    )
                    try operations.addHandler(
                        WebSocketSessionHandler(
                            channelProtocol: channelProtocol,
                            prepared: prepared,
                            registry: router.streaming.registry,
                            logger: router.streaming.logger
                        )
                    )
                }
            }
        )
        let spdy = SPDYUpgrader(router: router, decision: decision, fallback: fallback)
        try pipeline.configureHTTPServerPipeline(withServerUpgrade: (upgraders: [upgrader, spdy], completionHandler: { _ in }), withErrorHandling: true)
        try pipeline.addHandler(fallback.value)
        // A session prepared for an upgrade that never completed gives its slot back.
        channel.closeFuture.whenComplete { _ in
            if let (prepared, _) = decision.value.accepted {
                decision.value.accepted = nil
                prepared.release()
            }
            if let (prepared, _) = decision.value.acceptedSPDY {
                decision.value.acceptedSPDY = nil
                prepared.release()
            }
            if let (prepared, _) = decision.value.acceptedPortForward {
                decision.value.acceptedPortForward = nil
                prepared.release()
            }
            if let prepared = decision.value.acceptedSPDYPortForward {
                decision.value.acceptedSPDYPortForward = nil
                prepared.release()
            }
            if let prepared = decision.value.acceptedSPDYTunnel {
                decision.value.acceptedSPDYTunnel = nil
                prepared.release()
            }
        }
    }

    private static func shouldUpgrade(_ head: HTTPRequestHead, router: StreamRouter, decision: Decision) -> HTTPHeaders? {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard let (kind, token) = StreamRouter.streamingRoute(path) else { return nil }
        if let error = router.streaming.checkToken(kind: kind, token: token) {
            decision.refusal = error
            return nil
        }
        let offered = head.headers["Sec-WebSocket-Protocol"].flatMap { $0.split(separator: ",") }.map { String($0).trimmingCharacters(in: .whitespaces) }
        if kind == .portForward, let tunnel = offered.first(where: { SPDYOverWebSocketHandler.subprotocols.contains($0) }) {
            // SPDY tunnelled over WebSocket (client-go's port-forward dialer since 1.31).
            switch router.streaming.preparePortForward(token: token) {
            case .failure(let error):
                decision.refusal = error
                return nil
            case .success(let prepared):
                decision.acceptedSPDYTunnel = prepared
                var headers = HTTPHeaders()
                headers.add(name: "Sec-WebSocket-Protocol", value: tunnel)
                return headers
            }
        }
        guard let channelProtocol = KubernetesChannelProtocol.negotiate(headerValues: head.headers["Sec-WebSocket-Protocol"]) else {
            decision.refusal = HTTPErrorResponse.forbiddenSubprotocol
            return nil
        }
        if kind == .portForward {
            // The port-forward channel protocols: "", v4 and v4.base64 (PROTOCOLS.md §2).
            guard [.unnamed, .v4, .v4Base64].contains(channelProtocol) else {
                decision.refusal = HTTPErrorResponse.forbiddenSubprotocol
                return nil
            }
            switch router.streaming.preparePortForward(token: token) {
            case .failure(let error):
                decision.refusal = error
                return nil
            case .success(let prepared):
                decision.acceptedPortForward = (prepared, channelProtocol)
                var headers = HTTPHeaders()
                if channelProtocol != .unnamed {
                    headers.add(name: "Sec-WebSocket-Protocol", value: channelProtocol.rawValue)
                }
                return headers
            }
        }
        switch router.streaming.prepare(kind: kind, token: token) {
        case .failure(let error):
            decision.refusal = error
            return nil
        case .success(let prepared):
            decision.accepted = (prepared, channelProtocol)
            var headers = HTTPHeaders()
            if channelProtocol != .unnamed {
                headers.add(name: "Sec-WebSocket-Protocol", value: channelProtocol.rawValue)
            }
            return headers
        }
    }

    /// The answer to a streaming request that was not upgraded: what the check decided, or for a
    /// request that asked for no upgrade at all, 404 for a bad token and 400 otherwise.
    private static func refusal(for head: HTTPRequestHead, router: StreamRouter, decided: HTTPErrorResponse?) -> HTTPErrorResponse? {
        if let decided { return decided }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard let (kind, token) = StreamRouter.streamingRoute(path) else { return nil }
        if let error = router.streaming.checkToken(kind: kind, token: token) {
            return error
        }
        return HTTPErrorResponse(status: 400, body: "a streaming URL needs an upgrade: WebSocket (or SPDY/3.1), or HTTP/2\n")
    }

    /// SPDY/3.1 for remote command (PROTOCOLS.md §3a): `X-Stream-Protocol-Version` negotiation,
    /// then the session handler, which sends nothing before the client's first frame.
    struct SPDYUpgrader: HTTPServerProtocolUpgrader, @unchecked Sendable {
        // Used on the connection's event loop only (NIO calls upgraders there).
        let router: StreamRouter
        let decision: NIOLoopBound<Decision>
        let fallback: NIOLoopBound<HTTP1FallbackHandler>

        var supportedProtocol: String { "SPDY/3.1" }
        var requiredUpgradeHeaders: [String] { [] }

        func buildUpgradeResponse(channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders) -> EventLoopFuture<HTTPHeaders> {
            let path = upgradeRequest.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
            guard let (kind, token) = StreamRouter.streamingRoute(path) else {
                return channel.eventLoop.makeFailedFuture(Refused())
            }
            if let error = self.router.streaming.checkToken(kind: kind, token: token) {
                return self.refuse(error, on: channel)
            }
            let offered = upgradeRequest.headers["X-Stream-Protocol-Version"]
            guard !offered.isEmpty else {
                return self.refuse(HTTPErrorResponse(status: 400, body: "X-Stream-Protocol-Version is required for a SPDY upgrade\n"), on: channel)
            }
            if kind == .portForward {
                let protocols = offered.flatMap { $0.split(separator: ",") }.map { String($0).trimmingCharacters(in: .whitespaces) }
                guard protocols.contains(Self.portForwardProtocol) else {
                    let error = HTTPErrorResponse(
                        status: 403,
                        body: "port-forward speaks \(Self.portForwardProtocol)\n",
                        additionalHeaders: ["X-Accepted-Stream-Protocol-Versions": Self.portForwardProtocol]
                    )
                    return self.refuse(error, on: channel)
                }
                switch self.router.streaming.preparePortForward(token: token) {
                case .failure(let error):
                    return self.refuse(error, on: channel)
                case .success(let prepared):
                    self.decision.value.acceptedSPDYPortForward = prepared
                    var headers = initialResponseHeaders
                    headers.add(name: "X-Stream-Protocol-Version", value: Self.portForwardProtocol)
                    return channel.eventLoop.makeSucceededFuture(headers)
                }
            }
            guard let chosen = SPDYRemoteCommandProtocol.negotiate(headerValues: offered) else {
                let served = SPDYRemoteCommandProtocol.allCases.map(\.rawValue).joined(separator: ", ")
                let error = HTTPErrorResponse(
                    status: 403,
                    body: "none of the offered stream protocols is served: \(served)\n",
                    additionalHeaders: ["X-Accepted-Stream-Protocol-Versions": served]
                )
                return self.refuse(error, on: channel)
            }
            switch self.router.streaming.prepare(kind: kind, token: token) {
            case .failure(let error):
                return self.refuse(error, on: channel)
            case .success(let prepared):
                self.decision.value.acceptedSPDY = (prepared, chosen)
                var headers = initialResponseHeaders
                headers.add(name: "X-Stream-Protocol-Version", value: chosen.rawValue)
                return channel.eventLoop.makeSucceededFuture(headers)
            }
        }

        /// The SPDY port-forward protocol.
        static let portForwardProtocol = "portforward.k8s.io"

        func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
            if let prepared = self.decision.value.acceptedSPDYPortForward {
                self.decision.value.acceptedSPDYPortForward = nil
                let pipeline = context.pipeline
                let streaming = self.router.streaming
                return pipeline.syncOperations.removeHandler(self.fallback.value).flatMapThrowing {
                    try pipeline.syncOperations.addHandlers(StreamIdleTimeout.handlers(streaming.policy))
                    try pipeline.syncOperations.addHandler(
                        SPDYPortForwardHandler(prepared: prepared, logger: streaming.logger, creationTimeout: streaming.policy.streamCreationTimeout)
                    )
                }
            }
            guard let (prepared, chosen) = self.decision.value.acceptedSPDY else {
                return context.eventLoop.makeFailedFuture(ExecStreamError(code: .internalError, message: "a SPDY upgrade without a prepared session"))
            }
            self.decision.value.acceptedSPDY = nil
            let pipeline = context.pipeline
            let router = self.router
            return pipeline.syncOperations.removeHandler(self.fallback.value).flatMapThrowing {
                try pipeline.syncOperations.addHandlers(StreamIdleTimeout.handlers(router.streaming.policy))
                try pipeline.syncOperations.addHandler(
                    SPDYSessionHandler(
                        remoteCommandProtocol: chosen,
                        prepared: prepared,
                        registry: router.streaming.registry,
                        logger: router.streaming.logger,
                        creationTimeout: router.streaming.policy.streamCreationTimeout
                    )
                )
            }
        }

        private func refuse(_ error: HTTPErrorResponse, on channel: any Channel) -> EventLoopFuture<HTTPHeaders> {
            self.decision.value.refusal = error
            return channel.eventLoop.makeFailedFuture(Refused())
        }
    }
}

/// The stream idle timeout of upgraded connections (PROTOCOLS.md §2): every frame read or written,
/// pings included, restarts it; when it runs out the connection is closed, which ends its session
/// as a vanished client would.
enum StreamIdleTimeout {
    /// NIO's idle-state handler and the closer behind it.
    static func handlers(_ policy: SessionPolicy) -> [any ChannelHandler] {
        [IdleStateHandler(allTimeout: policy.streamIdleTimeout), Closer()]
    }

    /// Closes the connection on the idle event.
    final class Closer: ChannelInboundHandler {
        typealias InboundIn = NIOAny

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .all {
                context.close(promise: nil)
                return
            }
            context.fireUserInboundEventTriggered(event)
        }
    }
}
