import ExecStreamCore
import ExecStreamRemoteCommand
import NIOCore
import NIOWebSocket

/// An upgrade the checks accepted, on either carrier (an HTTP/1.1 `Upgrade`, or an HTTP/2
/// extended CONNECT served as an `HTTP2StreamChannel`): what it serves, with its session slot
/// taken and its token spent. Exactly one of installing its handlers and `release` happens to it.
/// The handlers are the same whatever carries them: one WebSocket implementation, on
/// NIOWebSocket's codec, for both.
enum AcceptedUpgrade {
    case webSocketSession(PreparedSession, KubernetesChannelProtocol)
    case webSocketPortForward(PortForwardSession, KubernetesChannelProtocol)
    case spdyOverWebSocket(PortForwardSession)
    case spdySession(PreparedSession, SPDYRemoteCommandProtocol)
    case spdyPortForward(PortForwardSession)

    /// The largest WebSocket frame a client may send, on either carrier.
    static let maxWebSocketFrameByteCount = 16 << 20

    /// NIOWebSocket's frame codec, for a carrier that is not an upgraded HTTP/1.1 connection
    /// (there, NIO's upgrader installs the same three handlers).
    static func webSocketCodec() -> [any ChannelHandler] {
        [
            WebSocketFrameEncoder(),
            ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: Self.maxWebSocketFrameByteCount)),
            WebSocketProtocolErrorHandler(),
        ]
    }

    /// Takes a session slot (429, token unspent) and spends the token for an admitted
    /// protocol; on failure, the refusal to send.
    /// `overHTTP2`: the carrier is an HTTP/2 stream (RFC 8441), not an HTTP/1.1 connection.
    static func redeem(
        _ admitted: StreamingProtocol,
        kind: StreamingRequestKind,
        token: String,
        overHTTP2: Bool = false,
        streaming: StreamingEndpoint
    ) -> Result<AcceptedUpgrade, HTTPErrorResponse> {
        switch admitted {
        case .webSocket(let channelProtocol):
            return streaming.prepare(kind: kind, token: token, transport: overHTTP2 ? "websocket-h2" : "websocket").map { .webSocketSession($0, channelProtocol) }
        case .webSocketPortForward(let channelProtocol):
            return streaming.preparePortForward(token: token, transport: overHTTP2 ? "websocket-h2" : "websocket").map { .webSocketPortForward($0, channelProtocol) }
        case .spdyOverWebSocket:
            return streaming.preparePortForward(token: token, transport: overHTTP2 ? "spdy-websocket-h2" : "spdy-websocket").map { .spdyOverWebSocket($0) }
        case .spdy(let chosen):
            return streaming.prepare(kind: kind, token: token, transport: "spdy").map { .spdySession($0, chosen) }
        case .spdyPortForward:
            return streaming.preparePortForward(token: token, transport: "spdy").map { .spdyPortForward($0) }
        case .native:
            // An HTTP/2 protocol: the admission never chooses it for an HTTP/1.1 upgrade.
            return .failure(HTTPErrorResponse(.upgradeRequired))
        }
    }

    /// Gives the slot back: the upgrade never completed.
    func release() {
        switch self {
        case .webSocketSession(let prepared, _), .spdySession(let prepared, _):
            prepared.release()
        case .webSocketPortForward(let prepared, _), .spdyOverWebSocket(let prepared), .spdyPortForward(let prepared):
            prepared.release()
        }
    }

    /// The handlers that serve the upgraded connection, after the idle timeout.
    func handlers(_ streaming: StreamingEndpoint) -> [any ChannelHandler] {
        let policy = streaming.policy
        let aggregator = NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 4096, maxAccumulatedFrameSize: Self.maxWebSocketFrameByteCount)
        let served: [any ChannelHandler]
        switch self {
        case .webSocketSession(let prepared, let channelProtocol):
            served = [
                WebSocketFrameValidator(),
                WebSocketSessionHandler(channelProtocol: channelProtocol, prepared: prepared, registry: streaming.registry, logger: streaming.logger),
            ]
        case .webSocketPortForward(let prepared, let channelProtocol):
            served = [WebSocketFrameValidator(), aggregator, PortForwardWebSocketHandler(session: prepared, channelProtocol: channelProtocol, logger: streaming.logger)]
        case .spdyOverWebSocket(let prepared):
            // The same SPDY port-forward handler as on a TCP upgrade, over a WebSocket byte carrier.
            served = [
                WebSocketFrameValidator(),
                WebSocketByteStreamHandler(),
                SPDYPortForwardHandler(session: prepared, logger: streaming.logger, creationTimeout: policy.streamCreationTimeout),
            ]
        case .spdySession(let prepared, let chosen):
            served = [
                SPDYSessionHandler(
                    remoteCommandProtocol: chosen,
                    prepared: prepared,
                    registry: streaming.registry,
                    logger: streaming.logger,
                    creationTimeout: policy.streamCreationTimeout
                )
            ]
        case .spdyPortForward(let prepared):
            served = [SPDYPortForwardHandler(session: prepared, logger: streaming.logger, creationTimeout: policy.streamCreationTimeout)]
        }
        return StreamIdleTimeout.handlers(policy) + served
    }
}
