public import NIOCore

/// A SPDY/3.1 frame, as the subset spdystream uses (PROTOCOLS.md §3b). Header blocks are kept
/// compressed here: the zlib streams that (de)compress them belong to the connection.
public enum SPDYFrame: Hashable, Sendable {
    /// SYN_STREAM: a new stream from the peer.
    case synStream(streamID: UInt32, associatedStreamID: UInt32, priority: UInt8, fin: Bool, unidirectional: Bool, headerBlock: ByteBuffer)
    /// SYN_REPLY: the answer to a SYN_STREAM.
    case synReply(streamID: UInt32, fin: Bool, headerBlock: ByteBuffer)
    /// RST_STREAM: a stream is over, abnormally.
    case rstStream(streamID: UInt32, status: UInt32)
    /// SETTINGS: ignored by spdystream, and by us.
    case settings(ByteBuffer)
    /// PING: echoed when its id's parity is the peer's.
    case ping(id: UInt32)
    /// GOAWAY: the connection is closing.
    case goAway(lastGoodStreamID: UInt32, status: UInt32)
    /// HEADERS: more headers for a stream.
    case headers(streamID: UInt32, fin: Bool, headerBlock: ByteBuffer)
    /// WINDOW_UPDATE: spdystream has no flow control; read and ignored.
    case windowUpdate(streamID: UInt32, delta: UInt32)
    /// DATA, with FIN as a half-close.
    case data(streamID: UInt32, fin: Bool, payload: ByteBuffer)
}

/// SPDY/3 constants.
public enum SPDY {
    /// The protocol version in every control frame.
    public static let version: UInt16 = 3
    /// The FIN flag (control and data frames).
    public static let flagFin: UInt8 = 0x01
    /// The UNIDIRECTIONAL flag of SYN_STREAM.
    public static let flagUnidirectional: UInt8 = 0x02
    /// The largest frame payload: 24 bits.
    public static let maxFrameLength = (1 << 24) - 1

    /// RST_STREAM statuses.
    public enum RstStatus {
        public static let protocolError: UInt32 = 1
        public static let invalidStream: UInt32 = 2
        public static let refusedStream: UInt32 = 3
        public static let cancel: UInt32 = 5
        public static let internalError: UInt32 = 6
    }

    /// The zlib dictionary of SPDY/3 header blocks (draft 3, §2.6.10.1): length-prefixed header
    /// names and common values, then common value fragments. 1,423 bytes, Adler-32 0xE3C6A7C2 (the
    /// dictionary id every SPDY/3 deflate stream names).
    public static let headerDictionary: [UInt8] = {
        let words = [
            "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding", "accept-language",
            "accept-ranges", "age", "allow", "authorization", "cache-control", "connection", "content-base", "content-encoding",
            "content-language", "content-length", "content-location", "content-md5", "content-range", "content-type", "date", "etag",
            "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
            "last-modified", "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
            "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
            "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
            "origin",
        ]
        let fragments =
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
            + "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
            + "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
            + "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
            + "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
            + "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
        var bytes: [UInt8] = []
        for word in words {
            let count = UInt32(word.utf8.count)
            bytes += [UInt8(count >> 24), UInt8((count >> 16) & 0xFF), UInt8((count >> 8) & 0xFF), UInt8(count & 0xFF)]
            bytes += word.utf8
        }
        return bytes + Array(fragments.utf8)
    }()
}

/// Reads SPDY/3 frames from a byte stream split anywhere. A control frame of another version or
/// of an unknown type, a payload too short for its type, a zero stream id where one is required,
/// or a frame above its limit is an error that ends the connection. The type and the limits are
/// judged from the 8-byte header, before the payload arrives, so such a frame is answered at once.
///
/// SPDY/3 §2.2.1 says to ignore unknown control types; spdystream's framer (the kubelet's and
/// crictl's) fails the connection on them instead, and so do we: no client of remote command
/// sends one, and a peer that does is not speaking the protocol we serve.
public struct SPDYFrameDecoder: NIOSingleStepByteToMessageDecoder, Sendable {
    public typealias InboundOut = SPDYFrame

    /// The largest frame payload accepted.
    public let maxFrameLength: Int
    /// The largest control frame payload accepted (a header block, in practice: a few dozen bytes).
    public let maxControlFrameLength: Int

    /// The payload lengths each control type of SPDY/3 allows (5, NOOP, is gone in version 3).
    private static let controlPayloadLengths: [UInt16: (range: ClosedRange<Int>, name: String)] = [
        1: (10...Int.max, "a SYN_STREAM of at least 10 bytes"),
        2: (4...Int.max, "a SYN_REPLY of at least 4 bytes"),
        3: (8...8, "a RST_STREAM of 8 bytes"),
        4: (0...Int.max, "a SETTINGS"),
        6: (4...4, "a PING of 4 bytes"),
        7: (4...Int.max, "a GOAWAY of at least 4 bytes"),
        8: (4...Int.max, "a HEADERS of at least 4 bytes"),
        9: (8...8, "a WINDOW_UPDATE of 8 bytes"),
    ]

    public init(maxFrameLength: Int = SPDY.maxFrameLength, maxControlFrameLength: Int = 64 << 10) {
        self.maxFrameLength = maxFrameLength
        self.maxControlFrameLength = min(maxControlFrameLength, maxFrameLength)
    }

    public mutating func decode(buffer: inout ByteBuffer) throws(ExecStreamError) -> SPDYFrame? {
        let start = buffer.readerIndex
        guard let word = buffer.getInteger(at: start, as: UInt32.self),
            let flagsAndLength = buffer.getInteger(at: start + 4, as: UInt32.self)
        else { return nil }
        let flags = UInt8(flagsAndLength >> 24)
        let length = Int(flagsAndLength & 0x00FF_FFFF)
        guard length <= self.maxFrameLength else {
            throw ExecStreamError(code: .messageTooLarge, message: "a SPDY frame of \(length) bytes exceeds the limit of \(self.maxFrameLength)")
        }
        if word & 0x8000_0000 != 0 {
            let version = UInt16((word >> 16) & 0x7FFF)
            guard version == SPDY.version else { throw Self.error("SPDY version \(version), not 3") }
            guard let allowed = Self.controlPayloadLengths[UInt16(word & 0xFFFF)] else {
                throw Self.error("an unknown SPDY control frame type \(word & 0xFFFF)")
            }
            guard allowed.range.contains(length) else {
                throw Self.error("expected \(allowed.name), got a payload of \(length)")
            }
            guard length <= self.maxControlFrameLength else {
                throw ExecStreamError(
                    code: .messageTooLarge,
                    message: "a SPDY control frame of \(length) bytes exceeds the limit of \(self.maxControlFrameLength)"
                )
            }
        } else if word & 0x7FFF_FFFF == 0 {
            throw Self.error("a DATA frame on stream 0")
        }
        guard buffer.readableBytes >= 8 + length else { return nil }
        var payload = buffer.getSlice(at: start + 8, length: length)!
        buffer.moveReaderIndex(forwardBy: 8 + length)
        guard word & 0x8000_0000 != 0 else {
            return .data(streamID: word & 0x7FFF_FFFF, fin: flags & SPDY.flagFin != 0, payload: payload)
        }
        switch UInt16(word & 0xFFFF) {
        case 1:
            let streamID = payload.readInteger(as: UInt32.self)! & 0x7FFF_FFFF
            let associated = payload.readInteger(as: UInt32.self)! & 0x7FFF_FFFF
            let priority = payload.readInteger(as: UInt8.self)! >> 5
            _ = payload.readInteger(as: UInt8.self)  // slot
            guard streamID != 0 else { throw Self.error("a SYN_STREAM for stream 0") }
            return .synStream(
                streamID: streamID,
                associatedStreamID: associated,
                priority: priority,
                fin: flags & SPDY.flagFin != 0,
                unidirectional: flags & SPDY.flagUnidirectional != 0,
                headerBlock: payload
            )
        case 2:
            let streamID = payload.readInteger(as: UInt32.self)! & 0x7FFF_FFFF
            return .synReply(streamID: streamID, fin: flags & SPDY.flagFin != 0, headerBlock: payload)
        case 3:
            return .rstStream(streamID: payload.readInteger(as: UInt32.self)! & 0x7FFF_FFFF, status: payload.readInteger(as: UInt32.self)!)
        case 4:
            return .settings(payload)
        case 6:
            return .ping(id: payload.readInteger(as: UInt32.self)!)
        case 7:
            let last = payload.readInteger(as: UInt32.self)! & 0x7FFF_FFFF
            return .goAway(lastGoodStreamID: last, status: payload.readInteger(as: UInt32.self) ?? 0)
        case 8:
            let streamID = payload.readInteger(as: UInt32.self)! & 0x7FFF_FFFF
            return .headers(streamID: streamID, fin: flags & SPDY.flagFin != 0, headerBlock: payload)
        case 9:
            return .windowUpdate(streamID: payload.readInteger(as: UInt32.self)! & 0x7FFF_FFFF, delta: payload.readInteger(as: UInt32.self)! & 0x7FFF_FFFF)
        default:
            throw Self.error("an unknown SPDY control frame type \(word & 0xFFFF)")  // refused above, from the header
        }
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws(ExecStreamError) -> SPDYFrame? {
        if let frame = try self.decode(buffer: &buffer) {
            return frame
        }
        guard buffer.readableBytes == 0 else { throw Self.error("the connection ended inside a SPDY frame") }
        return nil
    }

    private static func error(_ message: String) -> ExecStreamError {
        ExecStreamError(code: .malformedInput, message: message)
    }
}

/// Writes SPDY/3 frames. Header blocks are passed in compressed; DATA payloads are passed on as
/// they are after an 8-byte header (`writeDataHeader`), so output is not copied.
public enum SPDYFrameEncoder {
    /// Appends the 8-byte header of a DATA frame.
    public static func writeDataHeader(streamID: UInt32, fin: Bool, payloadByteCount: Int, into buffer: inout ByteBuffer) {
        precondition(payloadByteCount <= SPDY.maxFrameLength, "a SPDY DATA frame carries at most 2^24-1 bytes")
        buffer.writeInteger(streamID & 0x7FFF_FFFF)
        buffer.writeInteger((UInt32(fin ? SPDY.flagFin : 0) << 24) | UInt32(payloadByteCount))
    }

    /// Appends a whole control frame.
    public static func encode(_ frame: SPDYFrame, into buffer: inout ByteBuffer) {
        switch frame {
        case .synStream(let streamID, let associated, let priority, let fin, let unidirectional, let headerBlock):
            let flags = (fin ? SPDY.flagFin : 0) | (unidirectional ? SPDY.flagUnidirectional : 0)
            self.writeControlHeader(type: 1, flags: flags, length: 10 + headerBlock.readableBytes, into: &buffer)
            buffer.writeInteger(streamID & 0x7FFF_FFFF)
            buffer.writeInteger(associated & 0x7FFF_FFFF)
            buffer.writeInteger(priority << 5)
            buffer.writeInteger(UInt8(0))
            buffer.writeImmutableBuffer(headerBlock)
        case .synReply(let streamID, let fin, let headerBlock):
            self.writeControlHeader(type: 2, flags: fin ? SPDY.flagFin : 0, length: 4 + headerBlock.readableBytes, into: &buffer)
            buffer.writeInteger(streamID & 0x7FFF_FFFF)
            buffer.writeImmutableBuffer(headerBlock)
        case .rstStream(let streamID, let status):
            self.writeControlHeader(type: 3, flags: 0, length: 8, into: &buffer)
            buffer.writeInteger(streamID & 0x7FFF_FFFF)
            buffer.writeInteger(status)
        case .settings(let payload):
            self.writeControlHeader(type: 4, flags: 0, length: payload.readableBytes, into: &buffer)
            buffer.writeImmutableBuffer(payload)
        case .ping(let id):
            self.writeControlHeader(type: 6, flags: 0, length: 4, into: &buffer)
            buffer.writeInteger(id)
        case .goAway(let last, let status):
            self.writeControlHeader(type: 7, flags: 0, length: 8, into: &buffer)
            buffer.writeInteger(last & 0x7FFF_FFFF)
            buffer.writeInteger(status)
        case .headers(let streamID, let fin, let headerBlock):
            self.writeControlHeader(type: 8, flags: fin ? SPDY.flagFin : 0, length: 4 + headerBlock.readableBytes, into: &buffer)
            buffer.writeInteger(streamID & 0x7FFF_FFFF)
            buffer.writeImmutableBuffer(headerBlock)
        case .windowUpdate(let streamID, let delta):
            self.writeControlHeader(type: 9, flags: 0, length: 8, into: &buffer)
            buffer.writeInteger(streamID & 0x7FFF_FFFF)
            buffer.writeInteger(delta & 0x7FFF_FFFF)
        case .data(let streamID, let fin, let payload):
            self.writeDataHeader(streamID: streamID, fin: fin, payloadByteCount: payload.readableBytes, into: &buffer)
            buffer.writeImmutableBuffer(payload)
        }
    }

    private static func writeControlHeader(type: UInt16, flags: UInt8, length: Int, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt16(0x8000) | SPDY.version)
        buffer.writeInteger(type)
        buffer.writeInteger((UInt32(flags) << 24) | UInt32(length))
    }
}

/// The uncompressed layout of a header block: a u32 count, then per header a u32 length and the
/// lowercase name, a u32 length and the value (several values joined by NUL).
public enum SPDYHeaderBlock {
    /// Encodes `headers` (names lowercased).
    public static func encode(_ headers: [(name: String, value: String)]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(headers.count))
        for (name, value) in headers {
            let name = name.lowercased()
            buffer.writeInteger(UInt32(name.utf8.count))
            buffer.writeString(name)
            buffer.writeInteger(UInt32(value.utf8.count))
            buffer.writeString(value)
        }
        return buffer
    }

    /// Decodes a block into (name, value) pairs, one per value.
    public static func decode(_ block: ByteBuffer) throws(ExecStreamError) -> [(name: String, value: String)] {
        var block = block
        guard let count = block.readInteger(as: UInt32.self) else {
            throw ExecStreamError(code: .malformedInput, message: "a SPDY header block without its count")
        }
        var headers: [(name: String, value: String)] = []
        for _ in 0..<count {
            guard let nameLength = block.readInteger(as: UInt32.self), let name = block.readString(length: Int(nameLength)),
                let valueLength = block.readInteger(as: UInt32.self), let value = block.readString(length: Int(valueLength))
            else {
                throw ExecStreamError(code: .malformedInput, message: "a truncated SPDY header block")
            }
            for part in value.split(separator: "\u{0}", omittingEmptySubsequences: false) {
                headers.append((name, String(part)))
            }
        }
        return headers
    }
}
