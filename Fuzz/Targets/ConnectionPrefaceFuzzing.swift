import ExecStreamCore

/// The protocol sniffer's decision: once decided, more bytes never change it.
enum ConnectionPrefaceFuzzing {
    static func classify(_ bytes: [UInt8]) {
        let verdict = ConnectionPreface.classify(bytes)
        for length in 0...bytes.count {
            let early = ConnectionPreface.classify(bytes[..<length])
            switch early {
            case .undecided:
                continue
            case .http2, .http1, .malformedHTTP2Preface:
                precondition(early == verdict, "the connection preface verdict changed as bytes arrived")
                return
            }
        }
    }
}
