import ExecStreamCore
import NIOCore
import Testing

@Suite("Kubernetes channel framing")
struct ChannelMessageCodecTests {
    @Test("binary framing: one channel byte, then the payload")
    func binaryEncoding() {
        let (kind, message) = ChannelMessageCodec.encode(ByteBuffer(string: "hi"), on: .stdout, protocol: .v5)
        #expect(kind == .binary)
        #expect(Array(message.readableBytesView) == [1, 0x68, 0x69])
        let (_, initial) = ChannelMessageCodec.encode(ByteBuffer(), on: .stdout, protocol: .v4)
        #expect(Array(initial.readableBytesView) == [1], "the initial empty message is just the channel byte")
    }

    @Test("base64 framing: an ASCII channel digit, then standard base64, in a text frame")
    func base64Encoding() {
        let (kind, message) = ChannelMessageCodec.encode(ByteBuffer(string: "hi"), on: .stderr, protocol: .v4Base64)
        #expect(kind == .text)
        #expect(String(buffer: message) == "2aGk=")
        let (_, status) = ChannelMessageCodec.encode(ByteBuffer(bytes: [0xFF, 0x00]), on: .error, protocol: .v1Base64)
        #expect(String(buffer: status) == "3/wA=")
    }

    @Test("decoding binary and base64 messages")
    func decoding() throws {
        #expect(try ChannelMessageCodec.decode(ByteBuffer(bytes: [0, 0x61]), protocol: .v4) == .data(.stdin, ByteBuffer(string: "a")))
        #expect(try ChannelMessageCodec.decode(ByteBuffer(bytes: [4]), protocol: .unnamed) == .data(.resize, ByteBuffer()))
        #expect(try ChannelMessageCodec.decode(ByteBuffer(string: "0aGk="), protocol: .v4Base64) == .data(.stdin, ByteBuffer(string: "hi")))
        #expect(try ChannelMessageCodec.decode(ByteBuffer(string: "0"), protocol: .v1Base64) == .data(.stdin, ByteBuffer()))
        // Python sends text frames of chr(channel) + data on binary protocols: the bytes decide.
        #expect(try ChannelMessageCodec.decode(ByteBuffer(string: "\u{0}ls\n"), protocol: .v5) == .data(.stdin, ByteBuffer(string: "ls\n")))
    }

    @Test("v5 CLOSE is exactly [0xFF, channel]")
    func v5Close() throws {
        #expect(try ChannelMessageCodec.decode(ByteBuffer(bytes: [0xFF, 0]), protocol: .v5) == .close(.stdin))
        #expect(try ChannelMessageCodec.decode(ByteBuffer(bytes: [0xFF, 4]), protocol: .v5) == .close(.resize))
    }

    @Test("malformed messages are typed errors", arguments: [
        ([UInt8](), KubernetesChannelProtocol.v5),
        ([0xFF], .v5), ([0xFF, 0, 0], .v5), ([0xFF, 9], .v5),
        ([0xFF, 0], .v4), ([5, 1], .v1), ([0x30 + 5], .v4Base64), ([0x2F], .v4Base64),
        (Array("0aGk".utf8), .v4Base64), (Array("1a!k=".utf8), .v1Base64),
    ])
    func malformed(bytes: [UInt8], protocol: KubernetesChannelProtocol) {
        let error = #expect(throws: ExecStreamError.self) { try ChannelMessageCodec.decode(ByteBuffer(bytes: bytes), protocol: `protocol`) }
        #expect(error?.code == .malformedInput)
    }

    @Test("subprotocol negotiation: the client's order wins; no header is the unnamed protocol; no match is nil")
    func negotiation() {
        #expect(KubernetesChannelProtocol.negotiate(headerValues: ["v5.channel.k8s.io,v4.channel.k8s.io"]) == .v5)
        #expect(KubernetesChannelProtocol.negotiate(headerValues: ["v4.channel.k8s.io, v5.channel.k8s.io"]) == .v4)
        #expect(KubernetesChannelProtocol.negotiate(headerValues: ["x-unknown", "base64.channel.k8s.io"]) == .v1Base64)
        #expect(KubernetesChannelProtocol.negotiate(headerValues: []) == .unnamed)
        #expect(KubernetesChannelProtocol.negotiate(headerValues: ["SPDY/3.1+portforward.k8s.io"]) == nil)
    }

    @Test("what each protocol implies")
    func protocolProperties() {
        #expect(KubernetesChannelProtocol.allCases.filter(\.isBase64) == [.v1Base64, .v4Base64])
        #expect(KubernetesChannelProtocol.allCases.filter(\.usesStatusJSON) == [.v4, .v4Base64, .v5])
        #expect(KubernetesChannelProtocol.allCases.filter(\.supportsClose) == [.v5])
    }
}
