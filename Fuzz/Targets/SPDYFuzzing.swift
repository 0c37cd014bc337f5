import ExecStreamCore
import ExecStreamRemoteCommand
import NIOCore

/// SPDY/3.1 as the kubelet and crictl send it: frames, and zlib-compressed header blocks that
/// share one inflate stream per connection.
enum SPDYFuzzing {
    /// Frames from a stream split anywhere; every decoded frame re-encodes to a frame equal to it;
    /// header blocks go through one connection's inflater, as the server does.
    static func frames(_ bytes: [UInt8]) {
        let outcome = StreamSplitting.decodeBothWays(bytes) { SPDYFrameDecoder(maxFrameLength: 1 << 16) }
        let inflater = SPDYHeaderInflater(maxBlockByteCount: 1 << 16)
        for frame in outcome.messages {
            var encoded = ByteBuffer()
            SPDYFrameEncoder.encode(frame, into: &encoded)
            var decoder = SPDYFrameDecoder()
            let again = try? decoder.decode(buffer: &encoded)
            precondition(again == frame && encoded.readableBytes == 0, "a SPDY frame did not survive encoding: \(frame)")
            switch frame {
            case .synStream(_, _, _, _, _, let block), .synReply(_, _, let block), .headers(_, _, let block):
                _ = try? inflater.decompress(block)
            case .rstStream, .settings, .ping, .goAway, .windowUpdate, .data:
                break
            }
        }
    }

    /// One header block: compressed on a fresh stream, and the same bytes as an uncompressed block.
    /// A block that decodes re-encodes to headers equal to it (values joined by NUL split again).
    static func headerBlock(_ bytes: [UInt8]) {
        let inflater = SPDYHeaderInflater(maxBlockByteCount: 1 << 16)
        _ = try? inflater.decompress(ByteBuffer(bytes: bytes))
        guard let headers = try? SPDYHeaderBlock.decode(ByteBuffer(bytes: bytes)) else { return }
        let lowercased = headers.map { (name: $0.name.lowercased(), value: $0.value) }
        let again = try? SPDYHeaderBlock.decode(SPDYHeaderBlock.encode(lowercased))
        precondition(again.map { $0.map(\.name) == lowercased.map(\.name) && $0.map(\.value) == lowercased.map(\.value) } ?? false,
            "a SPDY header block did not survive encoding")
        let deflater = SPDYHeaderDeflater()
        let roundTrip = try? SPDYHeaderInflater().decompress(deflater.compress(lowercased))
        precondition(roundTrip.map { $0.map(\.value) == lowercased.map(\.value) } ?? false, "a SPDY header block did not survive zlib")
    }
}
