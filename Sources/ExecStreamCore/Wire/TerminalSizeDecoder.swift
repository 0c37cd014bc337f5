/// A terminal size, as the resize channel carries it.
public struct TerminalSize: Hashable, Sendable, CustomStringConvertible {
    /// Columns.
    public var width: UInt16
    /// Rows.
    public var height: UInt16

    public init(width: UInt16, height: UInt16) {
        self.width = width
        self.height = height
    }

    public var description: String { "\(self.width)x\(self.height)" }
}

/// Decodes the resize channel: a stream of concatenated JSON objects such as
/// `{"Width":80,"Height":24}\n` (Go's untagged `TerminalSize`), split anywhere across frames.
///
/// It follows Go's `encoding/json` as client-go's peer would: keys match case-insensitively, the
/// last duplicate wins, unknown keys are ignored, a missing key or `null` leaves 0, and a value
/// that is not an integer in 0…65535 is an error. Objects larger than `maxObjectBytes` are
/// `messageTooLarge`; anything that is not JSON is `malformedInput`. After an error the stream is
/// broken and the decoder must be discarded.
public struct TerminalSizeDecoder: Sendable {
    /// The largest object accepted, in bytes.
    public let maxObjectBytes: Int
    /// The bytes of the object being read, from its `{`; empty between objects.
    private var object: [UInt8] = []
    /// Nesting depth inside the current object (0 between objects).
    private var depth = 0
    private var inString = false
    private var escaped = false

    /// - Parameter maxObjectBytes: defaults to 4 KiB, far above any real resize message.
    public init(maxObjectBytes: Int = 4096) {
        self.maxObjectBytes = maxObjectBytes
    }

    /// Feeds bytes; returns every size completed by them, in order.
    public mutating func feed<Bytes: Sequence<UInt8>>(_ bytes: Bytes) throws(ExecStreamError) -> [TerminalSize] {
        var sizes: [TerminalSize] = []
        try self.feed(bytes, into: &sizes)
        return sizes
    }

    /// Feeds bytes; appends every size completed by them to `sizes` as it completes, so that the
    /// sizes before a malformed object are kept when it throws.
    public mutating func feed<Bytes: Sequence<UInt8>>(_ bytes: Bytes, into sizes: inout [TerminalSize]) throws(ExecStreamError) {
        for byte in bytes {
            if self.depth == 0 {
                if JSONScanner.isWhitespace(byte) {
                    continue
                }
                guard byte == UInt8(ascii: "{") else {
                    throw ExecStreamError(code: .malformedInput, message: "resize: expected a JSON object, got byte 0x\(String(byte, radix: 16))")
                }
                self.object = [byte]
                self.depth = 1
                continue
            }
            self.object.append(byte)
            guard self.object.count <= self.maxObjectBytes else {
                throw ExecStreamError(code: .messageTooLarge, message: "resize: JSON object over \(self.maxObjectBytes) bytes")
            }
            if self.inString {
                if self.escaped {
                    self.escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    self.escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    self.inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                self.inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                self.depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                self.depth -= 1
                if self.depth == 0 {
                    var scanner = JSONScanner(self.object)
                    sizes.append(try scanner.terminalSize())
                    self.object = []
                }
            default:
                break
            }
        }
    }
}

/// A strict recursive-descent reader for one complete JSON object.
private struct JSONScanner {
    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\t")
    }

    mutating func terminalSize() throws(ExecStreamError) -> TerminalSize {
        var size = TerminalSize(width: 0, height: 0)
        try self.expect(UInt8(ascii: "{"))
        try self.elements(closedBy: UInt8(ascii: "}")) { scanner throws(ExecStreamError) in
            let key = try scanner.string().lowercased()
            scanner.skipWhitespace()
            try scanner.expect(UInt8(ascii: ":"))
            scanner.skipWhitespace()
            switch key {
            case "width":
                size.width = try scanner.dimension(named: "Width") ?? size.width
            case "height":
                size.height = try scanner.dimension(named: "Height") ?? size.height
            default:
                try scanner.skipValue()
            }
        }
        guard self.index == self.bytes.count else { throw self.error("trailing bytes after the object") }
        return size
    }

    /// An integer in 0…65535, or nil for `null` (Go leaves the field unchanged).
    private mutating func dimension(named name: String) throws(ExecStreamError) -> UInt16? {
        if self.peek() == UInt8(ascii: "n") {
            try self.literal("null")
            return nil
        }
        let text = try self.number()
        guard let value = UInt16(text) else {
            throw self.error("cannot decode number \(text) into \(name) (uint16)")
        }
        return value
    }

    private mutating func skipValue() throws(ExecStreamError) {
        switch self.peek() {
        case UInt8(ascii: "\""):
            _ = try self.string()
        case UInt8(ascii: "{"):
            self.index += 1
            try self.elements(closedBy: UInt8(ascii: "}")) { scanner throws(ExecStreamError) in
                _ = try scanner.string()
                scanner.skipWhitespace()
                try scanner.expect(UInt8(ascii: ":"))
                scanner.skipWhitespace()
                try scanner.skipValue()
            }
        case UInt8(ascii: "["):
            self.index += 1
            try self.elements(closedBy: UInt8(ascii: "]")) { scanner throws(ExecStreamError) in
                try scanner.skipValue()
            }
        case UInt8(ascii: "t"):
            try self.literal("true")
        case UInt8(ascii: "f"):
            try self.literal("false")
        case UInt8(ascii: "n"):
            try self.literal("null")
        default:
            _ = try self.number()
        }
    }

    /// The comma-separated members of an object or array whose opening bracket has been read,
    /// up to and including `closing`. `element` reads one member (whitespace around it is skipped).
    private mutating func elements(
        closedBy closing: UInt8,
        _ element: (inout JSONScanner) throws(ExecStreamError) -> Void
    ) throws(ExecStreamError) {
        self.skipWhitespace()
        if self.peek() == closing {
            self.index += 1
            return
        }
        while true {
            self.skipWhitespace()
            try element(&self)
            self.skipWhitespace()
            guard self.peek() == UInt8(ascii: ",") else { break }
            self.index += 1
        }
        try self.expect(closing)
    }

    /// A JSON number's text: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    private mutating func number() throws(ExecStreamError) -> String {
        let start = self.index
        if self.peek() == UInt8(ascii: "-") {
            self.index += 1
        }
        if self.peek() == UInt8(ascii: "0") {
            self.index += 1
        } else {
            guard self.digits() > 0 else { throw self.error("invalid value") }
        }
        if self.peek() == UInt8(ascii: ".") {
            self.index += 1
            guard self.digits() > 0 else { throw self.error("invalid number") }
        }
        if self.peek() == UInt8(ascii: "e") || self.peek() == UInt8(ascii: "E") {
            self.index += 1
            if self.peek() == UInt8(ascii: "+") || self.peek() == UInt8(ascii: "-") {
                self.index += 1
            }
            guard self.digits() > 0 else { throw self.error("invalid number") }
        }
        return String(decoding: self.bytes[start..<self.index], as: UTF8.self)
    }

    private mutating func digits() -> Int {
        let start = self.index
        while let byte = self.peek(), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
            self.index += 1
        }
        return self.index - start
    }

    private mutating func string() throws(ExecStreamError) -> String {
        try self.expect(UInt8(ascii: "\""))
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        while true {
            guard let byte = self.peek() else { throw self.error("unterminated string") }
            self.index += 1
            switch byte {
            case UInt8(ascii: "\""):
                scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars)
                return String(scalars)
            case UInt8(ascii: "\\"):
                scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars)
                raw.removeAll()
                scalars.append(try self.escape())
            case 0..<0x20:
                throw self.error("control character in string")
            default:
                raw.append(byte)
            }
        }
    }

    private mutating func escape() throws(ExecStreamError) -> Unicode.Scalar {
        guard let byte = self.peek() else { throw self.error("unterminated escape") }
        self.index += 1
        switch byte {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            guard self.index + 4 <= self.bytes.count,
                let value = UInt32(String(decoding: self.bytes[self.index..<self.index + 4], as: UTF8.self), radix: 16)
            else { throw self.error("invalid \\u escape") }
            self.index += 4
            // Surrogates cannot be keys we care about; map them to U+FFFD as Go does for lone ones.
            return Unicode.Scalar(value) ?? "\u{FFFD}"
        default:
            throw self.error("invalid escape")
        }
    }

    private mutating func literal(_ word: String) throws(ExecStreamError) {
        for expected in word.utf8 {
            try self.expect(expected)
        }
    }

    private mutating func expect(_ byte: UInt8) throws(ExecStreamError) {
        guard self.peek() == byte else {
            throw self.error("expected '\(Character(Unicode.Scalar(byte)))'")
        }
        self.index += 1
    }

    private mutating func skipWhitespace() {
        while let byte = self.peek(), Self.isWhitespace(byte) {
            self.index += 1
        }
    }

    private func peek() -> UInt8? {
        self.index < self.bytes.count ? self.bytes[self.index] : nil
    }

    private func error(_ message: String) -> ExecStreamError {
        ExecStreamError(code: .malformedInput, message: "resize: \(message) at byte \(self.index)")
    }
}
