/// What the first bytes of a connection say it speaks: the decision of the protocol sniffer, as a
/// pure function of the bytes received so far (no I/O, so it can be tested and fuzzed alone).
///
/// ```
/// bytes so far ──▶ a proper prefix of the HTTP/2 preface ──▶ .undecided (wait for more)
///              ──▶ the whole preface                      ──▶ .http2 (prior knowledge, h2c)
///              ──▶ "PRI " and then not the preface        ──▶ .malformedHTTP2Preface (400, close)
///              ──▶ anything else                          ──▶ .http1
/// ```
public enum ConnectionPreface {
    /// The HTTP/2 client connection preface (RFC 9113 §3.4).
    public static let http2: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// The protocol a connection's first bytes announce.
    public enum Classification: Hashable, Sendable {
        /// Not enough bytes yet: they are a proper prefix of the HTTP/2 preface.
        case undecided
        /// HTTP/2 with prior knowledge: the whole preface arrived.
        case http2
        /// HTTP/1.x (including upgrade requests).
        case http1
        /// Starts like the HTTP/2 preface (`PRI `) but is not it. An HTTP/1 parser would wait on
        /// such bytes forever, so they are refused at once.
        case malformedHTTP2Preface
    }

    /// Classifies the bytes received so far.
    public static func classify<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Classification {
        let compared = min(bytes.count, self.http2.count)
        if bytes.prefix(compared).elementsEqual(self.http2.prefix(compared)) {
            return compared == self.http2.count ? .http2 : .undecided
        }
        return bytes.starts(with: self.http2.prefix(4)) ? .malformedHTTP2Preface : .http1
    }
}
