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
        var accepted: AcceptedUpgrade?
        var refusal: HTTPErrorResponse?

        /// Takes the accepted upgrade and installs its handlers in place of the fallback, which
        /// speaks HTTP and must be gone before the first frame.
        ///
        /// A client that vanished during the upgrade (its close already read, the channel no
        /// longer active) gets nothing installed: handlers added now would never see the channel
        /// go inactive, and a session started by them would run on for nobody. Its slot goes back.
        func install(on channel: any Channel, fallback: HTTP1FallbackHandler, streaming: StreamingEndpoint) -> EventLoopFuture<Void> {
            let pipeline = channel.pipeline
            guard let accepted = self.accepted else {
                return pipeline.eventLoop.makeFailedFuture(ExecStreamError(code: .internalError, message: "an upgrade without a prepared session"))
            }
            self.accepted = nil
            guard channel.isActive else {
                accepted.release()
                return pipeline.eventLoop.makeSucceededVoidFuture()
            }
            return pipeline.syncOperations.removeHandler(fallback).flatMapThrowing {
                try pipeline.syncOperations.addHandlers(accepted.handlers(streaming))
            }
        }

        /// Accepts `accepted`: the response headers the upgrade answers with.
        func accept(_ accepted: AcceptedUpgrade, headers: HTTPHeaders) -> HTTPHeaders {
            self.accepted = accepted
            return headers
        }

        /// The whole check of an upgrade on a streaming route: admission, slot, token. Returns
        /// the response headers (naming the chosen protocol in `protocolHeader`) or nil, refused.
        func decide(
            kind: StreamingRequestKind,
            token: String,
            carrier: StreamingCarrier,
            streaming: StreamingEndpoint,
            protocolHeader: String,
            headers: HTTPHeaders = HTTPHeaders()
        ) -> HTTPHeaders? {
            let accepted = streaming.admit(kind: kind, token: token, carrier: carrier).flatMap { admitted in
                AcceptedUpgrade.redeem(admitted, kind: kind, token: token, streaming: streaming).map { (admitted, $0) }
            }
            switch accepted {
            case .failure(let refusal):
                return self.refuse(refusal)
            case .success(let (admitted, prepared)):
                var headers = headers
                if let name = admitted.acceptedProtocolName {
                    headers.add(name: protocolHeader, value: name)
                }
                return self.accept(prepared, headers: headers)
            }
        }

        /// Refuses: the fallback sends `error` as the request's answer.
        func refuse(_ error: HTTPErrorResponse) -> HTTPHeaders? {
            self.refusal = error
            return nil
        }
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
            maxFrameSize: AcceptedUpgrade.maxWebSocketFrameByteCount,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                channel.eventLoop.makeSucceededFuture(Self.shouldUpgrade(head, router: router, decision: decision.value))
            },
            upgradePipelineHandler: { channel, _ in
                decision.value.install(on: channel, fallback: fallback.value, streaming: router.streaming)
            }
        )
        let spdy = SPDYUpgrader(router: router, decision: decision, fallback: fallback)
        try pipeline.configureHTTPServerPipeline(withServerUpgrade: (upgraders: [upgrader, spdy], completionHandler: { _ in }), withErrorHandling: true)
        try pipeline.addHandler(fallback.value)
        // A session prepared for an upgrade that never completed gives its slot back.
        channel.closeFuture.whenComplete { _ in
            decision.value.accepted?.release()
            decision.value.accepted = nil
        }
    }

    /// The WebSocket upgrade check (`StreamingAdmission`), then the slot and the token.
    private static func shouldUpgrade(_ head: HTTPRequestHead, router: StreamRouter, decision: Decision) -> HTTPHeaders? {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard let (kind, token) = StreamRouter.streamingRoute(path) else { return nil }
        return decision.decide(
            kind: kind,
            token: token,
            carrier: .http1WebSocket(subprotocols: head.headers["Sec-WebSocket-Protocol"]),
            streaming: router.streaming.forRequest(auditID: head.headers.first(name: "Audit-Id")),
            protocolHeader: "Sec-WebSocket-Protocol"
        )
    }

    /// The answer to a streaming request that was not upgraded: what the check decided, or for a
    /// request that asked for no upgrade at all, the admission's (404 for a bad token, else 400).
    private static func refusal(for head: HTTPRequestHead, router: StreamRouter, decided: HTTPErrorResponse?) -> HTTPErrorResponse? {
        if let decided { return decided }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard let (kind, token) = StreamRouter.streamingRoute(path) else { return nil }
        switch router.streaming.admit(kind: kind, token: token, carrier: .http1WithoutUpgrade) {
        case .failure(let refusal):
            return refusal
        case .success:
            return HTTPErrorResponse(.upgradeRequired)
        }
    }

    /// SPDY/3.1 (PROTOCOLS.md §3a, §4): `X-Stream-Protocol-Version` negotiation, then the session
    /// handler, which sends nothing before the client's first frame.
    struct SPDYUpgrader: HTTPServerProtocolUpgrader, @unchecked Sendable {
        // Used on the connection's event loop only (NIO calls upgraders there).
        let router: StreamRouter
        let decision: NIOLoopBound<Decision>
        let fallback: NIOLoopBound<HTTP1FallbackHandler>

        var supportedProtocol: String { "SPDY/3.1" }
        var requiredUpgradeHeaders: [String] { [] }

        func buildUpgradeResponse(channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders) -> EventLoopFuture<HTTPHeaders> {
            guard let headers = self.check(upgradeRequest, responseHeaders: initialResponseHeaders) else {
                // NIO passes the request on; the fallback answers with the refusal, if any.
                return channel.eventLoop.makeFailedFuture(Refused())
            }
            return channel.eventLoop.makeSucceededFuture(headers)
        }

        func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
            self.decision.value.install(on: context.channel, fallback: self.fallback.value, streaming: self.router.streaming)
        }

        /// The SPDY upgrade check (`StreamingAdmission`), then the slot and the token.
        private func check(_ request: HTTPRequestHead, responseHeaders: HTTPHeaders) -> HTTPHeaders? {
            let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
            guard let (kind, token) = StreamRouter.streamingRoute(path) else { return nil }
            return self.decision.value.decide(
                kind: kind,
                token: token,
                carrier: .http1SPDY(streamProtocols: request.headers["X-Stream-Protocol-Version"]),
                streaming: self.router.streaming.forRequest(auditID: request.headers.first(name: "Audit-Id")),
                protocolHeader: "X-Stream-Protocol-Version",
                headers: responseHeaders
            )
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
