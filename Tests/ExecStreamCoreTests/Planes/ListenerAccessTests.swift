import ExecStreamCore
import Testing

@Suite("The trust boundary: which listener serves which plane")
struct ListenerAccessTests {
    static let controlServices = [
        ("runtime.v1.RuntimeService", "ExecSync"),
        ("runtime.v1.ImageService", "ImageFsInfo"),
        ("execstream.v1.Containers", "Create"),
        ("containerd.services.streaming.v1.Streaming", "Stream"),
        ("some.unknown.Service", "Method"),
    ]

    @Test("a data-plane TCP listener refuses every control call, whatever its transport security", arguments: [
        ListenerAccess.TCPSecurity.plain, .tls, .mutualTLS,
    ])
    func dataListenersRefuseControlCalls(security: ListenerAccess.TCPSecurity) {
        let listener = ListenerAccess(.dataTCP(address: "127.0.0.1:10350", security: security))
        #expect(!listener.servesControlPlane)
        for (service, method) in Self.controlServices {
            guard case .refused(let message) = listener.admit(service: service, method: method) else {
                Issue.record("\(service)/\(method) was admitted on \(listener)")
                continue
            }
            #expect(message.contains("\(service)/\(method) is a control-plane call"))
            #expect(message.contains("127.0.0.1:10350"), "the message names the listener")
            #expect(message.contains("--control-listen"), "and says what would allow the call")
        }
        #expect(listener.admit(service: "grpc.health.v1.Health", method: "Check") == .admitted)
    }

    @Test("the unix socket, vsock and a mutual-TLS control listener serve both planes", arguments: [
        ListenerAccess.Kind.unixSocket(path: "/run/execstream/execstream.sock"), .vsock(port: 1024), .controlTCP(address: "10.0.0.5:10351"),
    ])
    func controlListenersServeEverything(kind: ListenerAccess.Kind) {
        let listener = ListenerAccess(kind)
        #expect(listener.servesControlPlane)
        for (service, method) in Self.controlServices + [("grpc.health.v1.Health", "Watch")] {
            #expect(listener.admit(service: service, method: method) == .admitted)
        }
    }

    @Test("a refusal never repeats a long method name in full")
    func refusalIsBounded() {
        let listener = ListenerAccess(.dataTCP(address: "127.0.0.1:1", security: .plain))
        guard case .refused(let message) = listener.admit(service: String(repeating: "s", count: 100_000), method: "m") else {
            Issue.record("admitted")
            return
        }
        #expect(message.utf8.count < 1024)
    }

    @Test("identities describe the peer and never a secret")
    func identities() {
        #expect(PeerIdentity.unixPeer(uid: 1000, gid: 100, pid: 42).description == "unix uid=1000 gid=100 pid=42")
        #expect(PeerIdentity.vsockPeer(contextID: 2).description == "vsock cid=2")
        #expect(PeerIdentity.tokenHolder(address: "ipv4:127.0.0.1:5000").description == "token holder at ipv4:127.0.0.1:5000")
        #expect(
            PeerIdentity.certificate(subject: "CN=kubelet,O=nodes", address: "ipv4:10.0.0.1:1").description
                == "certificate \"CN=kubelet,O=nodes\" at ipv4:10.0.0.1:1"
        )
    }

    @Test("a subject is written in RFC 4514 form: last name first, specials escaped")
    func distinguishedNames() {
        #expect(DistinguishedName.rfc4514([("C", "DE"), ("O", "Example, Inc."), ("CN", "node-1")]) == "CN=node-1,O=Example\\, Inc.,C=DE")
        #expect(DistinguishedName.rfc4514([("CN", " #lead+trail ")]) == "CN=\\ #lead\\+trail\\ ")
        #expect(DistinguishedName.rfc4514([("CN", "#x")]) == "CN=\\#x")
        #expect(DistinguishedName.rfc4514([]) == "")
    }
}
