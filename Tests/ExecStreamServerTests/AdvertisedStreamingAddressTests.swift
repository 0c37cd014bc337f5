import ExecStreamCore
@testable import ExecStreamServer
import Testing

@Suite("Advertised streaming address")
struct AdvertisedStreamingAddressTests {
    let token = StreamingToken(rawValue: "AAAAAAAAAAAAAAAAAAAAAA")

    @Test("never a wildcard: 0.0.0.0 and :: become loopback", arguments: [
        ("0.0.0.0", "http://127.0.0.1:10350/exec/AAAAAAAAAAAAAAAAAAAAAA"),
        ("::", "http://[::1]:10350/exec/AAAAAAAAAAAAAAAAAAAAAA"),
        ("192.0.2.7", "http://192.0.2.7:10350/exec/AAAAAAAAAAAAAAAAAAAAAA"),
        ("fd00::7", "http://[fd00::7]:10350/exec/AAAAAAAAAAAAAAAAAAAAAA"),
    ])
    func wildcardsBecomeLoopback(host: String, url: String) throws {
        let advertised = AdvertisedStreamingAddress()
        advertised.set(from: [Self.unix, Self.data(host, 10350)], override: nil)
        #expect(try advertised.url(kind: .exec, token: self.token) == url)
    }

    @Test("an explicit host wins; the port is the listener's")
    func override() throws {
        let advertised = AdvertisedStreamingAddress()
        advertised.set(from: [Self.data("0.0.0.0", 4321)], override: "node1.example")
        #expect(try advertised.url(kind: .portForward, token: self.token) == "http://node1.example:4321/portforward/AAAAAAAAAAAAAAAAAAAAAA")
    }

    @Test("without a TCP listener there is nothing to stream on: a clear error")
    func noTCPListener() {
        let advertised = AdvertisedStreamingAddress()
        advertised.set(from: [Self.unix], override: nil)
        let error = #expect(throws: ExecStreamError.self) { try advertised.url(kind: .attach, token: self.token) }
        #expect(error?.code == .failedPrecondition)
    }

    @Test("a TLS listener is advertised as https; a data-plane listener is preferred to a control one")
    func tlsAndPlanes() throws {
        let advertised = AdvertisedStreamingAddress()
        let control = BoundListener(address: .tcp(host: "127.0.0.1", port: 1), access: ListenerAccess(.controlTCP(address: "127.0.0.1:1")))
        advertised.set(from: [Self.unix, control, Self.data("127.0.0.1", 2, .tls)], override: nil)
        #expect(try advertised.url(kind: .exec, token: self.token) == "https://127.0.0.1:2/exec/AAAAAAAAAAAAAAAAAAAAAA")
        advertised.set(from: [control], override: nil)
        #expect(try advertised.url(kind: .exec, token: self.token) == "https://127.0.0.1:1/exec/AAAAAAAAAAAAAAAAAAAAAA")
    }

    static let unix = BoundListener(address: .unix(path: "/x.sock"), access: ListenerAccess(.unixSocket(path: "/x.sock")))

    static func data(_ host: String, _ port: Int, _ security: ListenerAccess.TCPSecurity = .plain) -> BoundListener {
        let address = ListenAddress.tcp(host: host, port: port)
        return BoundListener(address: address, access: ListenerAccess(.dataTCP(address: "\(address)", security: security)))
    }
}
