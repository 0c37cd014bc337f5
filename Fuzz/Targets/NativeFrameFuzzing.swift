import ExecStreamCore
import NIOCore

/// ExecStream's native frames: split anywhere, and every decoded frame re-encodes to itself.
enum NativeFrameFuzzing {
    static func frames(_ bytes: [UInt8]) {
        let outcome = StreamSplitting.decodeBothWays(bytes) { NativeFrameDecoder(maxPayloadByteCount: 1 << 16) }
        for frame in outcome.messages {
            var encoded = ByteBuffer()
            NativeFrameEncoder.encode(frame, into: &encoded)
            var decoder = NativeFrameDecoder()
            let again = try? decoder.decode(buffer: &encoded)
            precondition(again == frame && encoded.readableBytes == 0, "a native frame did not survive encoding: \(frame)")
        }
    }
}
