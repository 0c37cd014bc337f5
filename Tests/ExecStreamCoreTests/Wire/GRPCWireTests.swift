import ExecStreamCore
import NIOCore
import Testing

@Suite("gRPC wire")
struct GRPCWireTests {
    @Test("a message prefix is a zero flag and a big-endian length")
    func prefix() {
        var buffer = ByteBuffer()
        GRPCWire.writeMessagePrefix(byteCount: 0x0102_0304, into: &buffer)
        #expect(Array(buffer.readableBytesView) == [0, 1, 2, 3, 4])
    }

    @Test("messages are split out of a body cut at every byte")
    func deframing() throws {
        let body: [UInt8] = [0, 0, 0, 0, 2, 0x68, 0x69, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x21]
        for split in 0...body.count {
            var deframer = GRPCMessageDeframer()
            var buffer = ByteBuffer(bytes: body[..<split])
            var messages: [String] = []
            while let message = try deframer.decode(buffer: &buffer) {
                messages.append(String(buffer: message))
            }
            buffer.discardReadBytes()
            buffer.writeBytes(body[split...])
            while let message = try deframer.decodeLast(buffer: &buffer, seenEOF: true) {
                messages.append(String(buffer: message))
            }
            #expect(messages == ["hi", "", "!"], "split at \(split)")
        }
    }

    @Test("a message over the limit is refused from its prefix")
    func tooLarge() {
        var deframer = GRPCMessageDeframer(maxMessageByteCount: 4)
        var buffer = ByteBuffer(bytes: [0, 0, 0, 0, 5])
        let error = #expect(throws: ExecStreamError.self) { _ = try deframer.decode(buffer: &buffer) }
        #expect(error?.code == .messageTooLarge)
    }

    @Test("compressed or invalid flags, and truncated bodies, are malformed", arguments: [[1, 0, 0, 0, 0], [7, 0, 0, 0, 0]] as [[UInt8]])
    func malformedFlag(bytes: [UInt8]) {
        var deframer = GRPCMessageDeframer()
        var buffer = ByteBuffer(bytes: bytes)
        let error = #expect(throws: ExecStreamError.self) { _ = try deframer.decode(buffer: &buffer) }
        #expect(error?.code == .malformedInput)
    }

    @Test("a body ending inside a message is malformed")
    func truncated() {
        var deframer = GRPCMessageDeframer()
        var buffer = ByteBuffer(bytes: [0, 0, 0, 0, 3, 0x61])
        let error = #expect(throws: ExecStreamError.self) { _ = try deframer.decodeLast(buffer: &buffer, seenEOF: true) }
        #expect(error?.code == .malformedInput)
    }

    @Test("grpc-timeout units", arguments: [
        ("1H", TimeAmount.hours(1)), ("2M", .minutes(2)), ("3S", .seconds(3)), ("100m", .milliseconds(100)),
        ("5u", .microseconds(5)), ("99999999n", .nanoseconds(99_999_999)),
    ])
    func timeouts(text: String, amount: TimeAmount) {
        #expect(GRPCWire.parseTimeout(text) == amount)
    }

    @Test("malformed grpc-timeout values are nil", arguments: ["", "S", "10", "123456789S", "1x", "-1S", "1.5S"])
    func malformedTimeouts(text: String) {
        #expect(GRPCWire.parseTimeout(text) == nil)
    }

    @Test("grpc-message percent-encoding round-trips, with % and non-ASCII escaped")
    func percentEncoding() {
        #expect(GRPCWire.percentEncode("caf\u{e9} 100%\n") == "caf%C3%A9 100%25%0A")
        #expect(GRPCWire.percentDecode("caf%C3%A9 100%25%0A") == "caf\u{e9} 100%\n")
        #expect(GRPCWire.percentDecode("bad %zz and %4") == "bad %zz and %4")
    }
}

@Suite("gRPC status messages on the wire")
struct GRPCStatusMessageFieldTests {
    @Test("a short message is only percent-encoded")
    func short() {
        #expect(GRPCWire.statusMessageField("not found: 100%") == "not found: 100%25")
    }

    @Test("a long message is cut at a character, with an ellipsis, within 1 KiB once encoded")
    func long() {
        for message in [String(repeating: "x", count: 200_000), String(repeating: "é", count: 5000)] {
            let field = GRPCWire.statusMessageField(message)
            #expect(field.utf8.count <= GRPCWire.maxStatusMessageFieldBytes)
            #expect(field.hasSuffix("%E2%80%A6"))
            let decoded = GRPCWire.percentDecode(field)
            #expect(message.hasPrefix(String(decoded.dropLast())), "the cut ends on a whole character")
        }
    }
}
