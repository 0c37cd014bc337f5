public import NIOCore

/// The gRPC-over-HTTP/2 wire details that are pure functions: length-prefixed messages,
/// `grpc-timeout`, and the percent-encoding of `grpc-message`.
/// (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md)
public enum GRPCWire {
    /// The size of a message prefix: compressed flag (1 byte) and length (4 bytes, big-endian).
    public static let messagePrefixByteCount = 5

    /// Appends the 5-byte prefix of an uncompressed message of `byteCount` bytes.
    public static func writeMessagePrefix(byteCount: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(byteCount), endianness: .big)
    }

    /// Parses `grpc-timeout`: at most 8 ASCII digits and a unit (H, M, S, m, u, n). Nil if malformed.
    public static func parseTimeout(_ text: String) -> TimeAmount? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 2, bytes.count <= 9, let unit = bytes.last else { return nil }
        var value: Int64 = 0
        for byte in bytes.dropLast() {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        switch unit {
        case UInt8(ascii: "H"): return .hours(value)
        case UInt8(ascii: "M"): return .minutes(value)
        case UInt8(ascii: "S"): return .seconds(value)
        case UInt8(ascii: "m"): return .milliseconds(value)
        case UInt8(ascii: "u"): return .microseconds(value)
        case UInt8(ascii: "n"): return .nanoseconds(value)
        default: return nil
        }
    }

    /// Percent-encodes a status message: bytes outside 0x20–0x7E, and `%`, become `%XX`.
    public static func percentEncode(_ message: String) -> String {
        var encoded = ""
        for byte in message.utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") {
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                encoded += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return encoded
    }

    /// The longest `grpc-message` value sent, once encoded: a status message is a sentence for a
    /// person, never a copy of the request, and a header block must fit the peer's limits.
    public static let maxStatusMessageFieldBytes = 1024

    /// The `grpc-message` value for `message`: percent-encoded, and cut at a character with `…`
    /// so that the value is at most `maxStatusMessageFieldBytes` bytes.
    public static func statusMessageField(_ message: String) -> String {
        let encoded = Self.percentEncode(message)
        guard encoded.utf8.count > Self.maxStatusMessageFieldBytes else { return encoded }
        let ellipsis = Self.percentEncode("…")
        let budget = Self.maxStatusMessageFieldBytes - ellipsis.utf8.count
        var cut = ""
        for character in message {
            let piece = Self.percentEncode(String(character))
            guard cut.utf8.count + piece.utf8.count <= budget else { break }
            cut += piece
        }
        return cut + ellipsis
    }

    /// Decodes a percent-encoded status message; malformed escapes are kept as they are.
    public static func percentDecode(_ text: String) -> String {
        var bytes: [UInt8] = []
        let input = Array(text.utf8)
        var index = 0
        while index < input.count {
            if input[index] == UInt8(ascii: "%"), index + 2 < input.count,
                let value = UInt8(String(decoding: input[index + 1...index + 2], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                index += 3
            } else {
                bytes.append(input[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Splits a request body into gRPC messages. A message longer than `maxMessageByteCount` is
/// `messageTooLarge` (detected from its prefix); a set compressed flag is `malformedInput`, since
/// only the identity encoding is accepted; bytes left at end of stream are `malformedInput`.
public struct GRPCMessageDeframer: NIOSingleStepByteToMessageDecoder, Sendable {
    public typealias InboundOut = ByteBuffer

    /// The largest message accepted.
    public let maxMessageByteCount: Int

    /// - Parameter maxMessageByteCount: 16 MiB by default, as CRI clients use.
    public init(maxMessageByteCount: Int = 16 << 20) {
        self.maxMessageByteCount = maxMessageByteCount
    }

    public mutating func decode(buffer: inout ByteBuffer) throws(ExecStreamError) -> ByteBuffer? {
        let maxMessageByteCount = self.maxMessageByteCount
        return try TaggedLengthPrefixedFrame.read(
            from: &buffer,
            maxPayloadByteCount: maxMessageByteCount,
            validateTag: { flag throws(ExecStreamError) in
                guard flag == 0 else {
                    throw ExecStreamError(
                        code: .malformedInput,
                        message: flag == 1 ? "compressed message received but only identity encoding is supported" : "invalid compressed flag \(flag)"
                    )
                }
            },
            tooLarge: { length in
                ExecStreamError(code: .messageTooLarge, message: "message of \(length) bytes exceeds the limit of \(maxMessageByteCount) bytes")
            }
        )?.payload
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws(ExecStreamError) -> ByteBuffer? {
        if let message = try self.decode(buffer: &buffer) {
            return message
        }
        try TaggedLengthPrefixedFrame.requireNothingLeft(in: buffer, what: "a message")
        return nil
    }
}
