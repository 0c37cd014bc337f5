// # Admission of a streaming request
//
// One decision for every carrier and protocol of `/exec`, `/attach` and `/portforward`, made from
// the request head alone (no I/O), in the kubelet streaming library's order:
//
//   token redeemable? ──no──▶ 404 (whatever else is wrong)
//        │ yes
//   an upgrade or carrier that can stream this kind? ──no──▶ 400 (405, 415 for native HTTP/2)
//        │ yes
//   a protocol we serve among those offered? ──no──▶ 403 (naming ours)
//        │ yes
//   admitted: the protocol ──▶ then, in the endpoint: a session slot (429, token left unspent),
//                              and only then the token is spent.
//
// The refusals map to HTTP answers in one place (the server's ErrorMapping).

/// How a streaming request reached the server, with what each carrier's head offers.
public enum StreamingCarrier: Hashable, Sendable {
    /// An HTTP/2 request (not extended CONNECT): ExecStream's native framing.
    case http2(method: String, contentType: String?)
    /// HTTP/2 extended CONNECT (RFC 8441), with its `:protocol` and offered subprotocols.
    case http2ExtendedConnect(protocol: String?, webSocketSubprotocols: [String])
    /// An HTTP/1.1 WebSocket upgrade, with the `Sec-WebSocket-Protocol` values.
    case http1WebSocket(subprotocols: [String])
    /// An HTTP/1.1 `Upgrade: SPDY/3.1`, with the `X-Stream-Protocol-Version` values.
    case http1SPDY(streamProtocols: [String])
    /// HTTP/1.1 with no upgrade we serve.
    case http1WithoutUpgrade
}

/// The protocol an admitted request is served with.
public enum StreamingProtocol: Hashable, Sendable {
    /// Native HTTP/2 framing (exec, attach).
    case native
    /// A Kubernetes channel protocol over WebSocket, on HTTP/1.1 or HTTP/2 (exec, attach).
    case webSocket(KubernetesChannelProtocol)
    /// Port-forward over WebSocket (`""`, `v4.channel.k8s.io`, `v4.base64.channel.k8s.io`).
    case webSocketPortForward(KubernetesChannelProtocol)
    /// SPDY tunnelled in WebSocket binary messages (client-go's port-forward since 1.31).
    case spdyOverWebSocket(subprotocol: String)
    /// Remote command over SPDY/3.1 (exec, attach).
    case spdy(SPDYRemoteCommandProtocol)
    /// Port-forward over SPDY/3.1.
    case spdyPortForward

    /// The subprotocol or stream protocol header the accepting response names, if any.
    public var acceptedProtocolName: String? {
        switch self {
        case .native: return nil
        case .webSocket(let chosen), .webSocketPortForward(let chosen): return chosen == .unnamed ? nil : chosen.rawValue
        case .spdyOverWebSocket(let subprotocol): return subprotocol
        case .spdy(let chosen): return chosen.rawValue
        case .spdyPortForward: return StreamingAdmission.spdyPortForwardProtocol
        }
    }
}

/// Why a streaming request was refused before anything was spent.
public enum AdmissionRefusal: Error, Hashable, Sendable {
    /// Unknown, expired, spent, or for another route (404).
    case unknownToken(StreamingRequestKind)
    /// HTTP/1.1 without an upgrade (400).
    case upgradeRequired
    /// Native HTTP/2 with a method other than POST (405).
    case methodNotAllowed
    /// Native HTTP/2 without the native content type (415).
    case unsupportedContentType
    /// HTTP/2 CONNECT without `:protocol websocket` (400).
    case webSocketProtocolRequired
    /// A SPDY upgrade without `X-Stream-Protocol-Version` (400).
    case streamProtocolRequired
    /// Port-forward in native HTTP/2 framing (400): it is served over WebSocket (on HTTP/1.1 or
    /// HTTP/2) and SPDY/3.1.
    case portForwardNeedsWebSocket
    /// No offered WebSocket subprotocol is served (403).
    case noServedSubprotocol
    /// No offered SPDY stream protocol is served (403, naming ours).
    case noServedStreamProtocol(served: [String])
}

/// The admission decision (see the diagram above).
public enum StreamingAdmission {
    /// The native framing's content type.
    public static let nativeContentType = "application/vnd.execstream.v1"
    /// SPDY port-forward's stream protocol.
    public static let spdyPortForwardProtocol = "portforward.k8s.io"
    /// The WebSocket subprotocols of SPDY tunnelled over WebSocket.
    public static let spdyOverWebSocketSubprotocols = ["SPDY/3.1+portforward.k8s.io", "v2.portforward.k8s.io"]
    /// The channel protocols port-forward serves over WebSocket (PROTOCOLS.md §2).
    public static let webSocketPortForwardProtocols: Set<KubernetesChannelProtocol> = [.unnamed, .v4, .v4Base64]

    /// Decides a request for `kind` whose token is (or is not) redeemable, from its carrier.
    public static func decide(kind: StreamingRequestKind, tokenRedeemable: Bool, carrier: StreamingCarrier) -> Result<StreamingProtocol, AdmissionRefusal> {
        guard tokenRedeemable else { return .failure(.unknownToken(kind)) }
        switch carrier {
        case .http1WithoutUpgrade:
            return .failure(.upgradeRequired)
        case .http2(let method, let contentType):
            guard kind != .portForward else { return .failure(.portForwardNeedsWebSocket) }
            guard method == "POST" else { return .failure(.methodNotAllowed) }
            let mediaType = contentType?.split(separator: ";").first.map { String($0).trimmingASCIIWhitespace() }
            guard mediaType == Self.nativeContentType else { return .failure(.unsupportedContentType) }
            return .success(.native)
        case .http2ExtendedConnect(let connectProtocol, let subprotocols):
            guard connectProtocol == "websocket" else { return .failure(.webSocketProtocolRequired) }
            return Self.webSocket(kind: kind, subprotocols: subprotocols)
        case .http1WebSocket(let subprotocols):
            return Self.webSocket(kind: kind, subprotocols: subprotocols)
        case .http1SPDY(let streamProtocols):
            guard !streamProtocols.isEmpty else { return .failure(.streamProtocolRequired) }
            guard kind != .portForward else {
                let offered = streamProtocols.flatMap { $0.split(separator: ",") }.map { String($0).trimmingASCIIWhitespace() }
                guard offered.contains(Self.spdyPortForwardProtocol) else {
                    return .failure(.noServedStreamProtocol(served: [Self.spdyPortForwardProtocol]))
                }
                return .success(.spdyPortForward)
            }
            guard let chosen = SPDYRemoteCommandProtocol.negotiate(headerValues: streamProtocols) else {
                return .failure(.noServedStreamProtocol(served: SPDYRemoteCommandProtocol.allCases.map(\.rawValue)))
            }
            return .success(.spdy(chosen))
        }
    }

    /// A WebSocket, over either carrier: a served channel protocol; for port-forward, one of its
    /// own three, or the SPDY tunnel.
    private static func webSocket(kind: StreamingRequestKind, subprotocols: [String]) -> Result<StreamingProtocol, AdmissionRefusal> {
        if kind == .portForward {
            let offered = subprotocols.flatMap { $0.split(separator: ",") }.map { String($0).trimmingASCIIWhitespace() }
            if let tunnel = offered.first(where: { Self.spdyOverWebSocketSubprotocols.contains($0) }) {
                return .success(.spdyOverWebSocket(subprotocol: tunnel))
            }
        }
        guard let chosen = KubernetesChannelProtocol.negotiate(headerValues: subprotocols) else { return .failure(.noServedSubprotocol) }
        guard kind == .portForward else { return .success(.webSocket(chosen)) }
        guard Self.webSocketPortForwardProtocols.contains(chosen) else { return .failure(.noServedSubprotocol) }
        return .success(.webSocketPortForward(chosen))
    }
}
