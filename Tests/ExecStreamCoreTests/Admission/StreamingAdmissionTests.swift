import ExecStreamCore
import Testing

@Suite("Streaming admission")
struct StreamingAdmissionTests {
    private let native = StreamingCarrier.http2(method: "POST", contentType: StreamingAdmission.nativeContentType)

    private func decide(_ carrier: StreamingCarrier, kind: StreamingRequestKind = .exec, redeemable: Bool = true) -> Result<StreamingProtocol, AdmissionRefusal> {
        StreamingAdmission.decide(kind: kind, tokenRedeemable: redeemable, carrier: carrier)
    }

    @Test("a token that cannot be redeemed is 404 whatever else is wrong, on every carrier")
    func tokenFirst() {
        let carriers: [StreamingCarrier] = [
            .http2(method: "GET", contentType: nil), .http2ExtendedConnect(protocol: nil, webSocketSubprotocols: ["nonsense"]),
            .http1WebSocket(subprotocols: ["nonsense"]), .http1SPDY(streamProtocols: []), .http1WithoutUpgrade,
        ]
        for kind in StreamingRequestKind.allCases {
            for carrier in carriers {
                #expect(self.decide(carrier, kind: kind, redeemable: false) == .failure(.unknownToken(kind)))
            }
        }
    }

    @Test("native HTTP/2: port-forward 400, then POST (405), then the content type (415, parameters allowed)")
    func nativeHTTP2() {
        #expect(self.decide(self.native) == .success(.native))
        #expect(self.decide(.http2(method: "POST", contentType: StreamingAdmission.nativeContentType + "; charset=binary"), kind: .attach) == .success(.native))
        #expect(self.decide(self.native, kind: .portForward) == .failure(.portForwardNeedsWebSocket))
        #expect(self.decide(.http2(method: "GET", contentType: "text/plain")) == .failure(.methodNotAllowed))
        #expect(self.decide(.http2(method: "POST", contentType: nil)) == .failure(.unsupportedContentType))
        #expect(self.decide(.http2(method: "POST", contentType: "application/json")) == .failure(.unsupportedContentType))
    }

    @Test("WebSocket over HTTP/2: :protocol websocket (400), then a served subprotocol (403); none offered is the unnamed one")
    func webSocketOverHTTP2() {
        #expect(self.decide(.http2ExtendedConnect(protocol: "websocket", webSocketSubprotocols: ["v5.channel.k8s.io"])) == .success(.webSocket(.v5)))
        #expect(self.decide(.http2ExtendedConnect(protocol: "websocket", webSocketSubprotocols: [])) == .success(.webSocket(.unnamed)))
        #expect(self.decide(.http2ExtendedConnect(protocol: "h2c", webSocketSubprotocols: ["v5.channel.k8s.io"])) == .failure(.webSocketProtocolRequired))
        #expect(self.decide(.http2ExtendedConnect(protocol: "websocket", webSocketSubprotocols: ["v9.channel.k8s.io"])) == .failure(.noServedSubprotocol))
        // Port-forward decides as over HTTP/1.1: its own three channel protocols, or the SPDY tunnel.
        #expect(self.decide(.http2ExtendedConnect(protocol: "websocket", webSocketSubprotocols: []), kind: .portForward) == .success(.webSocketPortForward(.unnamed)))
        #expect(self.decide(.http2ExtendedConnect(protocol: "websocket", webSocketSubprotocols: ["v4.channel.k8s.io"]), kind: .portForward) == .success(.webSocketPortForward(.v4)))
        #expect(self.decide(.http2ExtendedConnect(protocol: "websocket", webSocketSubprotocols: ["SPDY/3.1+portforward.k8s.io"]), kind: .portForward)
            == .success(.spdyOverWebSocket(subprotocol: "SPDY/3.1+portforward.k8s.io")))
        #expect(self.decide(.http2ExtendedConnect(protocol: "websocket", webSocketSubprotocols: ["v5.channel.k8s.io"]), kind: .portForward) == .failure(.noServedSubprotocol))
    }

    @Test("WebSocket over HTTP/1.1: the client's first served subprotocol; port-forward's own three, or the SPDY tunnel")
    func webSocketOverHTTP1() {
        #expect(self.decide(.http1WebSocket(subprotocols: ["v9.channel.k8s.io, v4.channel.k8s.io", "v5.channel.k8s.io"])) == .success(.webSocket(.v4)))
        #expect(self.decide(.http1WebSocket(subprotocols: ["SPDY/3.1+portforward.k8s.io"])) == .failure(.noServedSubprotocol))
        #expect(self.decide(.http1WebSocket(subprotocols: ["v4.channel.k8s.io"]), kind: .portForward) == .success(.webSocketPortForward(.v4)))
        #expect(self.decide(.http1WebSocket(subprotocols: []), kind: .portForward) == .success(.webSocketPortForward(.unnamed)))
        #expect(self.decide(.http1WebSocket(subprotocols: ["v5.channel.k8s.io"]), kind: .portForward) == .failure(.noServedSubprotocol))
        #expect(self.decide(.http1WebSocket(subprotocols: ["v4.channel.k8s.io, SPDY/3.1+portforward.k8s.io"]), kind: .portForward)
            == .success(.spdyOverWebSocket(subprotocol: "SPDY/3.1+portforward.k8s.io")))
    }

    @Test("SPDY: a protocol header at all (400), then one we serve (403 naming ours)")
    func spdy() {
        #expect(self.decide(.http1SPDY(streamProtocols: ["v4.channel.k8s.io"])) == .success(.spdy(.v4)))
        #expect(self.decide(.http1SPDY(streamProtocols: [])) == .failure(.streamProtocolRequired))
        #expect(self.decide(.http1SPDY(streamProtocols: ["v9.channel.k8s.io"]))
            == .failure(.noServedStreamProtocol(served: SPDYRemoteCommandProtocol.allCases.map(\.rawValue))))
        #expect(self.decide(.http1SPDY(streamProtocols: ["portforward.k8s.io"]), kind: .portForward) == .success(.spdyPortForward))
        #expect(self.decide(.http1SPDY(streamProtocols: ["v4.channel.k8s.io"]), kind: .portForward) == .failure(.noServedStreamProtocol(served: ["portforward.k8s.io"])))
    }

    @Test("HTTP/1.1 without an upgrade is 400 once the token is good")
    func withoutUpgrade() {
        #expect(self.decide(.http1WithoutUpgrade, kind: .attach) == .failure(.upgradeRequired))
    }

    @Test("the accepting response names the chosen protocol, except the unnamed one and native")
    func acceptedNames() {
        #expect(StreamingProtocol.native.acceptedProtocolName == nil)
        #expect(StreamingProtocol.webSocket(.unnamed).acceptedProtocolName == nil)
        #expect(StreamingProtocol.webSocket(.v5).acceptedProtocolName == "v5.channel.k8s.io")
        #expect(StreamingProtocol.spdy(.v4).acceptedProtocolName == "v4.channel.k8s.io")
        #expect(StreamingProtocol.spdyPortForward.acceptedProtocolName == "portforward.k8s.io")
    }
}
