/// Base64 as the Kubernetes channel protocols and our tokens use it.
///
/// - Standard alphabet with padding (RFC 4648 §4): the `base64.channel.k8s.io` variants, where
///   Go's `base64.StdEncoding` is the reference. Decoding is strict: padding is required, and
///   any other byte is an error.
/// - URL-safe alphabet without padding (RFC 4648 §5): streaming tokens.
public enum Base64 {
    private static let standardAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let urlAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let padding = UInt8(ascii: "=")

    /// 0–63 for a byte of the standard alphabet, 0xFF otherwise.
    private static let standardValues: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, byte) in standardAlphabet.enumerated() {
            table[Int(byte)] = UInt8(value)
        }
        return table
    }()

    /// Encodes with the standard alphabet and padding.
    public static func encode<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> [UInt8] {
        self.encode(bytes, alphabet: self.standardAlphabet, padded: true)
    }

    /// Encodes with the URL-safe alphabet and no padding.
    public static func encodeURLSafeUnpadded<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> String {
        String(decoding: self.encode(bytes, alphabet: self.urlAlphabet, padded: false), as: UTF8.self)
    }

    private static func encode<Bytes: Collection<UInt8>>(_ bytes: Bytes, alphabet: [UInt8], padded: Bool) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var iterator = bytes.makeIterator()
        while let b0 = iterator.next() {
            let b1 = iterator.next()
            let b2 = iterator.next()
            output.append(alphabet[Int(b0 >> 2)])
            output.append(alphabet[Int((b0 & 0x03) << 4 | (b1 ?? 0) >> 4)])
            if let b1 {
                output.append(alphabet[Int((b1 & 0x0F) << 2 | (b2 ?? 0) >> 6)])
            } else if padded {
                output.append(self.padding)
            }
            if let b2 {
                output.append(alphabet[Int(b2 & 0x3F)])
            } else if padded {
                output.append(self.padding)
            }
        }
        return output
    }

    /// Decodes standard, padded base64. Whitespace, a missing or misplaced `=`, or a byte outside
    /// the alphabet is `malformedInput`.
    public static func decode<Bytes: Collection<UInt8>>(_ text: Bytes) throws(ExecStreamError) -> [UInt8] {
        let input = Array(text)
        guard input.count % 4 == 0 else {
            throw ExecStreamError(code: .malformedInput, message: "base64 length \(input.count) is not a multiple of 4")
        }
        var output: [UInt8] = []
        output.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            let isLastQuantum = index + 4 == input.count
            let paddingCount = isLastQuantum ? input[index...].reversed().prefix { $0 == self.padding }.count : 0
            guard paddingCount <= 2 else {
                throw ExecStreamError(code: .malformedInput, message: "base64 has too much padding")
            }
            var quantum: UInt32 = 0
            for offset in 0..<(4 - paddingCount) {
                let value = self.standardValues[Int(input[index + offset])]
                guard value != 0xFF else {
                    throw ExecStreamError(code: .malformedInput, message: "invalid base64 byte 0x\(String(input[index + offset], radix: 16)) at \(index + offset)")
                }
                quantum |= UInt32(value) << (18 - 6 * UInt32(offset))
            }
            output.append(UInt8(truncatingIfNeeded: quantum >> 16))
            if paddingCount < 2 {
                output.append(UInt8(truncatingIfNeeded: quantum >> 8))
            }
            if paddingCount < 1 {
                output.append(UInt8(truncatingIfNeeded: quantum))
            }
            index += 4
        }
        return output
    }
}
