import ExecStreamCore
import NIOCore

/// Feeds one input to a stream decoder twice: whole, and cut into pieces whose sizes come from the
/// input's first byte. Peers split their bytes anywhere (TCP segments, HTTP/2 DATA frames), so both
/// must give the same messages and the same verdict.
enum StreamSplitting {
    /// What a decoder made of a stream: its messages, then the error that stopped it, if any.
    struct Outcome<Message: Equatable>: Equatable {
        var messages: [Message] = []
        var failure: ExecStreamError.Code?
    }

    /// Decodes `bytes` whole and split; checks that both agree; returns the whole outcome.
    static func decodeBothWays<Decoder: NIOSingleStepByteToMessageDecoder>(
        _ bytes: [UInt8],
        makeDecoder: () -> Decoder
    ) -> Outcome<Decoder.InboundOut> where Decoder.InboundOut: Equatable {
        let whole = self.decode([bytes[...]], with: makeDecoder())
        let split = self.decode(self.pieces(of: bytes), with: makeDecoder())
        precondition(whole == split, "a stream split into pieces decoded differently from the same stream whole")
        return whole
    }

    /// The input cut into pieces of 1 to 16 bytes (sizes from a generator seeded by the first byte).
    static func pieces(of bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var state = UInt32(bytes.first ?? 0) | 0x100
        var pieces: [ArraySlice<UInt8>] = []
        var start = 0
        while start < bytes.count {
            state = state &* 1_103_515_245 &+ 12_345
            let size = Int((state >> 16) % 16) + 1
            let end = min(bytes.count, start + size)
            pieces.append(bytes[start..<end])
            start = end
        }
        return pieces
    }

    private static func decode<Decoder: NIOSingleStepByteToMessageDecoder>(
        _ pieces: [ArraySlice<UInt8>],
        with decoder: Decoder
    ) -> Outcome<Decoder.InboundOut> where Decoder.InboundOut: Equatable {
        var decoder = decoder
        var buffer = ByteBuffer()
        var outcome = Outcome<Decoder.InboundOut>()
        do {
            for (index, piece) in pieces.enumerated() {
                buffer.writeBytes(piece)
                while let message = try decoder.decode(buffer: &buffer) {
                    outcome.messages.append(message)
                }
                if index == pieces.count - 1 {
                    while let message = try decoder.decodeLast(buffer: &buffer, seenEOF: true) {
                        outcome.messages.append(message)
                    }
                }
                buffer.discardReadBytes()
            }
        } catch let error as ExecStreamError {
            outcome.failure = error.code
        } catch {
            preconditionFailure("a decoder threw something other than ExecStreamError: \(error)")
        }
        return outcome
    }
}
