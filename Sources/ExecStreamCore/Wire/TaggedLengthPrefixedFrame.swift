import NIOCore

/// The frame shape both the native streaming format and gRPC messages use: a one-byte tag (a
/// channel, a compressed flag), a 32-bit big-endian length, then the payload.
enum TaggedLengthPrefixedFrame {
    /// Size of the tag and length.
    static let headerByteCount = 5

    /// Reads the next frame if `buffer` holds all of it; nil if more bytes are needed. The tag is
    /// checked with `validateTag` and the length against `maxPayloadByteCount` from the header
    /// alone, before the payload is buffered.
    static func read(
        from buffer: inout ByteBuffer,
        maxPayloadByteCount: Int,
        validateTag: (UInt8) throws(ExecStreamError) -> Void,
        tooLarge: (UInt32) -> ExecStreamError
    ) throws(ExecStreamError) -> (tag: UInt8, payload: ByteBuffer)? {
        guard let tag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            let length = buffer.getInteger(at: buffer.readerIndex + 1, endianness: .big, as: UInt32.self)
        else { return nil }
        try validateTag(tag)
        guard length <= maxPayloadByteCount else { throw tooLarge(length) }
        guard buffer.readableBytes >= self.headerByteCount + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: self.headerByteCount)
        return (tag, buffer.readSlice(length: Int(length))!)
    }

    /// At end of stream: what remains must be whole frames.
    static func requireNothingLeft(in buffer: ByteBuffer, what: String) throws(ExecStreamError) {
        guard buffer.readableBytes == 0 else {
            throw ExecStreamError(code: .malformedInput, message: "stream ended inside \(what) (\(buffer.readableBytes) bytes left)")
        }
    }
}
