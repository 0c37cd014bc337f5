import ExecStreamCore
import ExecStreamRemoteCommand
import NIOCore
import Testing

@Suite("SPDY/3.1 framing and header compression")
struct SPDYFramingTests {
    @Test("the header dictionary is the spec's: 1,423 bytes with Adler-32 0xE3C6A7C2")
    func dictionary() {
        var a: UInt32 = 1
        var b: UInt32 = 0
        for byte in SPDY.headerDictionary {
            a = (a + UInt32(byte)) % 65521
            b = (b + a) % 65521
        }
        #expect(SPDY.headerDictionary.count == 1423)
        #expect((b << 16) | a == 0xE3C6_A7C2)
    }

    @Test("header blocks survive one persistent deflate and inflate stream, block after block")
    func headerCompressionRoundTrip() throws {
        let deflater = SPDYHeaderDeflater()
        let inflater = SPDYHeaderInflater()
        let blocks: [[(name: String, value: String)]] = [
            [("streamtype", "error")],
            [],
            [("streamtype", "stdin"), ("x-stream-protocol-version", "v4.channel.k8s.io")],
            [("Streamtype", "stdout")],
            [("big", String(repeating: "x", count: 100_000))],
        ]
        for block in blocks {
            let decoded = try inflater.decompress(deflater.compress(block))
            #expect(decoded.map(\.name) == block.map { $0.name.lowercased() })
            #expect(decoded.map(\.value) == block.map(\.value))
        }
    }

    @Test("a block from another zlib stream or garbage is an error, not a crash")
    func garbage() {
        let inflater = SPDYHeaderInflater()
        #expect(throws: ExecStreamError.self) { _ = try inflater.decompress(ByteBuffer(bytes: [1, 2, 3, 4, 5, 6])) }
    }

    @Test("a header block that expands past the limit is refused")
    func bomb() {
        let deflater = SPDYHeaderDeflater()
        let inflater = SPDYHeaderInflater(maxBlockByteCount: 10_000)
        let block = deflater.compress([("a", String(repeating: "a", count: 1_000_000))])
        #expect(block.readableBytes < 10_000)
        let error = #expect(throws: ExecStreamError.self) { _ = try inflater.decompress(block) }
        #expect(error?.code == .messageTooLarge)
    }

    @Test("frames: every control type and DATA, byte for byte, split anywhere")
    func frames() throws {
        let frames: [SPDYFrame] = [
            .synStream(streamID: 1, associatedStreamID: 0, priority: 0, fin: false, unidirectional: false, headerBlock: ByteBuffer(bytes: [9, 9])),
            .synReply(streamID: 1, fin: false, headerBlock: ByteBuffer(bytes: [7])),
            .rstStream(streamID: 3, status: SPDY.RstStatus.cancel),
            .ping(id: 1),
            .goAway(lastGoodStreamID: 5, status: 0),
            .headers(streamID: 3, fin: true, headerBlock: ByteBuffer()),
            .windowUpdate(streamID: 3, delta: 100),
            .data(streamID: 3, fin: true, payload: ByteBuffer(string: "hello")),
            .data(streamID: 5, fin: false, payload: ByteBuffer()),
        ]
        var wire = ByteBuffer()
        for frame in frames {
            SPDYFrameEncoder.encode(frame, into: &wire)
        }
        // SYN_REPLY for stream 1 with a one-byte block: 80 03 00 02 | 00 00 00 05 | 00 00 00 01 | 07
        let synReply = wire.getBytes(at: 20, length: 13)
        #expect(synReply == [0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01, 0x07])
        var decoder = SPDYFrameDecoder()
        var buffer = ByteBuffer()
        var decoded: [SPDYFrame] = []
        for byte in wire.readableBytesView {
            buffer.writeInteger(byte)
            while let frame = try decoder.decode(buffer: &buffer) {
                decoded.append(frame)
            }
        }
        #expect(decoded == frames)
    }

    @Test("an unknown control type, a wrong version, a bad fixed length or an oversized control frame is an error from the 8-byte header alone")
    func refusedFromTheHeader() throws {
        // Issue 13 changed this from "skipped" (SPDY/3 §2.2.1) to an error, as spdystream's framer
        // does: every frame that is not remote command's gets a prompt GOAWAY.
        for header: [UInt8] in [
            [0x80, 0x03, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x02],  // type 10, unknown
            [0x80, 0x03, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00],  // NOOP, gone in SPDY/3
            [0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04],  // version 2
            [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x10, 0x00],  // a PING of 4,096 bytes
            [0x80, 0x03, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01],  // a SYN_STREAM of 65,537 bytes
            [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10],  // DATA on stream 0
        ] {
            var buffer = ByteBuffer(bytes: header)
            var decoder = SPDYFrameDecoder()
            #expect(throws: ExecStreamError.self, "\(header)") { _ = try decoder.decode(buffer: &buffer) }
        }
        var ping = ByteBuffer()
        SPDYFrameEncoder.encode(.ping(id: 7), into: &ping)
        var decoder = SPDYFrameDecoder()
        #expect(try decoder.decode(buffer: &ping) == .ping(id: 7))
    }
}
