import ExecStreamCore

/// Resize JSON as a stream of objects: split anywhere, the same sizes and the same verdict.
enum ResizeFuzzing {
    static func objects(_ bytes: [UInt8]) {
        let whole = self.feed([bytes[...]])
        let split = self.feed(StreamSplitting.pieces(of: bytes))
        precondition(whole.sizes == split.sizes && whole.failure == split.failure, "resize JSON split into pieces decoded differently")
    }

    private static func feed(_ pieces: [ArraySlice<UInt8>]) -> (sizes: [TerminalSize], failure: ExecStreamError.Code?) {
        var decoder = TerminalSizeDecoder(maxObjectBytes: 512)
        var sizes: [TerminalSize] = []
        do {
            for piece in pieces {
                try decoder.feed(piece, into: &sizes)
            }
        } catch {
            return (sizes, error.code)
        }
        return (sizes, nil)
    }
}
