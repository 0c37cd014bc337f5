import ExecStreamCore
import NIOCore
import Testing

@Suite("Native frame codec")
struct NativeFrameCodecTests {
    func encoded(_ frames: [NativeFrame]) -> [UInt8] {
        var buffer = ByteBuffer()
        for frame in frames {
            NativeFrameEncoder.encode(frame, into: &buffer)
        }
        return Array(buffer.readableBytesView)
    }

    @Test("exact bytes: [channel][u32 big-endian length][payload]")
    func exactBytes() {
        #expect(self.encoded([.data(.stdout, ByteBuffer(string: "hi"))]) == [1, 0, 0, 0, 2, 0x68, 0x69])
        #expect(self.encoded([.data(.stdin, ByteBuffer())]) == [0, 0, 0, 0, 0])
        #expect(self.encoded([.close(.stdin)]) == [0xFF, 0, 0, 0, 1, 0])
        #expect(self.encoded([.position(.stderr, offset: 0x0102)]) == [0x10, 0, 0, 0, 9, 2, 0, 0, 0, 0, 0, 0, 1, 2])
        #expect(self.encoded([.acknowledge(.stdout, offset: 7)]) == [0x11, 0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 7])
        #expect(
            self.encoded([.stdinWindow(taken: 1, limit: 0x0100)])
                == [0x12, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
        )
        var header = ByteBuffer()
        NativeFrameEncoder.writeHeader(channel: 2, payloadByteCount: 0x0102_0304, into: &header)
        #expect(Array(header.readableBytesView) == [2, 1, 2, 3, 4])
    }

    @Test("decoding a stream split at every byte")
    func splitStream() throws {
        let frames: [NativeFrame] = [
            .data(.stdin, ByteBuffer(string: "echo hi\n")), .data(.resize, ByteBuffer(string: #"{"Width":80,"Height":24}"#)),
            .data(.stdin, ByteBuffer()), .close(.stdin), .position(.stdout, offset: 1 << 40), .acknowledge(.stderr, offset: 0),
            .stdinWindow(taken: 3, limit: 3),
        ]
        let bytes = self.encoded(frames)
        for split in 0...bytes.count {
            var decoder = NativeFrameDecoder()
            var buffer = ByteBuffer(bytes: bytes[..<split])
            var decoded: [NativeFrame] = []
            while let frame = try decoder.decode(buffer: &buffer) {
                decoded.append(frame)
            }
            buffer.discardReadBytes()
            buffer.writeBytes(bytes[split...])
            while let frame = try decoder.decodeLast(buffer: &buffer, seenEOF: true) {
                decoded.append(frame)
            }
            #expect(decoded == frames, "split at \(split)")
        }
    }

    @Test("malformed frames are typed errors", arguments: [
        [5, 0, 0, 0, 0], [0xFE, 0, 0, 0, 0], [0xFF, 0, 0, 0, 2, 0, 0], [0xFF, 0, 0, 0, 0], [0xFF, 0, 0, 0, 1, 7],
        // A position naming stdin, one a byte short, an acknowledge naming the status channel.
        [0x10, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0x10, 0, 0, 0, 8, 1, 0, 0, 0, 0, 0, 0, 0],
        [0x11, 0, 0, 0, 9, 3, 0, 0, 0, 0, 0, 0, 0, 1],
        // A stdin window whose limit is below what was taken.
        [0x12, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1], [0x13, 0, 0, 0, 0],
    ] as [[UInt8]])
    func malformed(bytes: [UInt8]) {
        var decoder = NativeFrameDecoder()
        var buffer = ByteBuffer(bytes: bytes)
        let error = #expect(throws: ExecStreamError.self) { _ = try decoder.decode(buffer: &buffer) }
        #expect(error?.code == .malformedInput)
    }

    @Test("an oversized frame is refused from its header alone")
    func oversized() {
        var decoder = NativeFrameDecoder(maxPayloadByteCount: 4)
        var buffer = ByteBuffer(bytes: [1, 0, 0, 0, 5])
        let error = #expect(throws: ExecStreamError.self) { _ = try decoder.decode(buffer: &buffer) }
        #expect(error?.code == .messageTooLarge)
    }

    @Test("a stream ending inside a frame is an error")
    func truncated() {
        var decoder = NativeFrameDecoder()
        var buffer = ByteBuffer(bytes: [1, 0, 0, 0, 3, 0x61])
        let error = #expect(throws: ExecStreamError.self) { _ = try decoder.decodeLast(buffer: &buffer, seenEOF: true) }
        #expect(error?.code == .malformedInput)
    }
}
