public import NIOCore

/// One frame of ExecStream's native HTTP/2 streaming format (PROTOCOLS.md §9):
/// `[channel u8][length u32 big-endian][payload]`, with the channel numbers of `v5.channel.k8s.io`.
public enum NativeFrame: Hashable, Sendable {
    /// Payload for a channel: 0 stdin, 1 stdout, 2 stderr, 3 status JSON, 4 resize JSON.
    case data(RemoteCommandChannel, ByteBuffer)
    /// Channel 255: the sender closed the named channel (payload: that channel, one byte).
    case close(RemoteCommandChannel)
}

/// Writes native frames.
public enum NativeFrameEncoder {
    /// The size of a frame header.
    public static let headerByteCount = 5
    /// The channel byte of a close frame.
    public static let closeChannel: UInt8 = 0xFF

    /// Appends the 5-byte header of a frame of `payloadByteCount` bytes on `channel`. Senders that
    /// want to avoid copying write this header and then hand the payload buffer on as it is.
    public static func writeHeader(channel: UInt8, payloadByteCount: Int, into buffer: inout ByteBuffer) {
        precondition(payloadByteCount >= 0 && payloadByteCount <= Int(UInt32.max), "a native frame payload must fit in 32 bits")
        buffer.writeInteger(channel)
        buffer.writeInteger(UInt32(payloadByteCount), endianness: .big)
    }

    /// Appends a whole frame (header and payload) to `buffer`.
    public static func encode(_ frame: NativeFrame, into buffer: inout ByteBuffer) {
        switch frame {
        case .data(let channel, let payload):
            self.writeHeader(channel: channel.rawValue, payloadByteCount: payload.readableBytes, into: &buffer)
            buffer.writeImmutableBuffer(payload)
        case .close(let channel):
            self.writeHeader(channel: self.closeChannel, payloadByteCount: 1, into: &buffer)
            buffer.writeInteger(channel.rawValue)
        }
    }
}

/// Reads native frames from a byte stream split anywhere. A channel other than 0–4 or 255, a close
/// frame whose payload is not exactly one valid channel, or bytes left over at end of stream are
/// `malformedInput`; a payload longer than `maxPayloadByteCount` is `messageTooLarge`, detected
/// from the header before the payload is buffered.
public struct NativeFrameDecoder: NIOSingleStepByteToMessageDecoder, Sendable {
    public typealias InboundOut = NativeFrame

    /// The largest payload accepted.
    public let maxPayloadByteCount: Int

    /// - Parameter maxPayloadByteCount: defaults to 16 MiB.
    public init(maxPayloadByteCount: Int = 16 << 20) {
        self.maxPayloadByteCount = maxPayloadByteCount
    }

    /// Decodes the next frame if `buffer` holds all of it; nil if more bytes are needed.
    public mutating func decode(buffer: inout ByteBuffer) throws(ExecStreamError) -> NativeFrame? {
        let maxPayloadByteCount = self.maxPayloadByteCount
        guard
            let (channelByte, payload) = try TaggedLengthPrefixedFrame.read(
                from: &buffer,
                maxPayloadByteCount: maxPayloadByteCount,
                validateTag: { tag throws(ExecStreamError) in
                    guard tag == NativeFrameEncoder.closeChannel || RemoteCommandChannel(rawValue: tag) != nil else {
                        throw ExecStreamError(code: .malformedInput, message: "native frame on unknown channel \(tag)")
                    }
                },
                tooLarge: { length in
                    ExecStreamError(code: .messageTooLarge, message: "native frame of \(length) bytes exceeds the limit of \(maxPayloadByteCount)")
                }
            )
        else { return nil }
        guard channelByte == NativeFrameEncoder.closeChannel else {
            return .data(RemoteCommandChannel(rawValue: channelByte)!, payload)
        }
        guard payload.readableBytes == 1, let closed = RemoteCommandChannel(rawValue: payload.getInteger(at: payload.readerIndex)!) else {
            throw ExecStreamError(code: .malformedInput, message: "a close frame must name one channel 0-4")
        }
        return .close(closed)
    }

    /// At end of stream: decodes what is left; a partial frame is `malformedInput`.
    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws(ExecStreamError) -> NativeFrame? {
        if let frame = try self.decode(buffer: &buffer) {
            return frame
        }
        try TaggedLengthPrefixedFrame.requireNothingLeft(in: buffer, what: "a native frame")
        return nil
    }
}
