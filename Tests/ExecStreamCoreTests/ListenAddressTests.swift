import ExecStreamCore
import Testing

@Suite("Listen addresses")
struct ListenAddressTests {
    @Test("the forms operators type", arguments: [
        ("127.0.0.1:10350", ListenAddress.tcp(host: "127.0.0.1", port: 10350)),
        ("[::1]:0", .tcp(host: "::1", port: 0)),
        ("localhost:80", .tcp(host: "localhost", port: 80)),
        ("unix:///run/execstream/execstream.sock", .unix(path: "/run/execstream/execstream.sock")),
        ("unix:/tmp/x.sock", .unix(path: "/tmp/x.sock")),
        ("vsock://:1024", .vsock(port: 1024)),
        ("vsock://any:2048", .vsock(port: 2048)),
    ])
    func parses(text: String, address: ListenAddress) throws {
        #expect(try ListenAddress(parsing: text) == address)
    }

    @Test("invalid addresses are one clear error", arguments: ["127.0.0.1", ":80", "host:99999", "unix://relative", "vsock://3:1024", "vsock://:x"])
    func rejects(text: String) {
        let error = #expect(throws: ExecStreamError.self) { try ListenAddress(parsing: text) }
        #expect(error?.code == .invalidArgument)
    }

    @Test("descriptions are what the server prints")
    func descriptions() {
        #expect(ListenAddress.tcp(host: "::1", port: 5).description == "[::1]:5")
        #expect(ListenAddress.unix(path: "/a.sock").description == "unix:///a.sock")
    }
}
