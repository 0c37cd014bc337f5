public import NIOCore

/// One frame of ExecStream's native HTTP/2 streaming format (PROTOCOLS.md §9):
/// `[channel u8][length u32 big-endian][payload]`, with the channel numbers of `v5.channel.k8s.io`.
public enum NativeFrame: Hashable, Sendable {
    /// Payload for a channel: 0 stdin, 1 stdout, 2 stderr, 3 status JSON, 4 resize JSON.
    case data(RemoteCommandChannel, ByteBuffer)
    /// Channel 255: the sender closed the named channel (payload: that channel, one byte).
    case close(RemoteCommandChannel)
    /// Resumable attach, server → client (channel 16): the next data frame on `channel` (stdout or
    /// stderr) starts at this offset of the channel's stream. Payload: `[channel u8][offset u64]`.
    case position(RemoteCommandChannel, offset: UInt64)
    /// Resumable attach, client → server (channel 17): the client holds every byte of `channel`
    /// before `offset`. Payload: `[channel u8][offset u64]`.
    case acknowledge(RemoteCommandChannel, offset: UInt64)
    /// Resumable attach, server → client (channel 18): stdin bytes before stream offset `taken`
    /// are in the container's stdin channel, and the client may send up to offset `limit`.
    /// Payload: `[taken u64][limit u64]`.
    case stdinWindow(taken: UInt64, limit: UInt64)
}

/// Writes native frames.
public enum NativeFrameEncoder {
    /// The size of a frame header.
    public static let headerByteCount = 5
    /// The channel byte of a close frame.
    public static let closeChannel: UInt8 = 0xFF
    /// The channel byte of a position frame.
    public static let positionChannel: UInt8 = 0x10
    /// The channel byte of an acknowledge frame.
    public static let acknowledgeChannel: UInt8 = 0x11
    /// The channel byte of a stdin window frame.
    public static let stdinWindowChannel: UInt8 = 0x12

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
        case .position(let channel, let offset):
            self.writeHeader(channel: self.positionChannel, payloadByteCount: 9, into: &buffer)
            buffer.writeInteger(channel.rawValue)
            buffer.writeInteger(offset, endianness: .big)
        case .acknowledge(let channel, let offset):
            self.writeHeader(channel: self.acknowledgeChannel, payloadByteCount: 9, into: &buffer)
            buffer.writeInteger(channel.rawValue)
            buffer.writeInteger(offset, endianness: .big)
        case .stdinWindow(let taken, let limit):
            self.writeHeader(channel: self.stdinWindowChannel, payloadByteCount: 16, into: &buffer)
            buffer.writeInteger(taken, endianness: .big)
            buffer.writeInteger(limit, endianness: .big)
        }
    }
}

/// Reads native frames from a byte stream split anywhere. A channel other than 0–4, 16–18 or 255,
/// a close frame whose payload is not exactly one valid channel, a resume frame of the wrong size
/// or naming a channel other than stdout or stderr, or bytes left over at end of stream are
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
            let (channelByte, framePayload) = try TaggedLengthPrefixedFrame.read(
                from: &buffer,
                maxPayloadByteCount: maxPayloadByteCount,
                validateTag: { tag throws(ExecStreamError) in
                    guard NativeFrameDecoder.controlChannels.contains(tag) || RemoteCommandChannel(rawValue: tag) != nil else {
                        throw ExecStreamError(code: .malformedInput, message: "native frame on unknown channel \(tag)")
                    }
                },
                tooLarge: { length in
                    ExecStreamError(code: .messageTooLarge, message: "native frame of \(length) bytes exceeds the limit of \(maxPayloadByteCount)")
                }
            )
        else { return nil }
        var payload = framePayload
        switch channelByte {
        case NativeFrameEncoder.closeChannel:
            guard payload.readableBytes == 1, let closed = RemoteCommandChannel(rawValue: payload.readInteger()!) else {
                throw ExecStreamError(code: .malformedInput, message: "a close frame must name one channel 0-4")
            }
            return .close(closed)
        case NativeFrameEncoder.positionChannel:
            let (channel, offset) = try Self.readOutputOffset(&payload, frame: "position")
            return .position(channel, offset: offset)
        case NativeFrameEncoder.acknowledgeChannel:
            let (channel, offset) = try Self.readOutputOffset(&payload, frame: "acknowledge")
            return .acknowledge(channel, offset: offset)
        case NativeFrameEncoder.stdinWindowChannel:
            guard payload.readableBytes == 16, let taken = payload.readInteger(endianness: .big, as: UInt64.self),
                let limit = payload.readInteger(endianness: .big, as: UInt64.self), taken <= limit
            else {
                throw ExecStreamError(code: .malformedInput, message: "a stdin window frame must hold two offsets, taken <= limit")
            }
            return .stdinWindow(taken: taken, limit: limit)
        default:
            return .data(RemoteCommandChannel(rawValue: channelByte)!, payload)
        }
    }

    /// The channel bytes that are not `RemoteCommandChannel`s.
    private static let controlChannels: Set<UInt8> = [
        NativeFrameEncoder.closeChannel, NativeFrameEncoder.positionChannel, NativeFrameEncoder.acknowledgeChannel,
        NativeFrameEncoder.stdinWindowChannel,
    ]

    /// `[channel u8][offset u64]`, the channel stdout or stderr.
    private static func readOutputOffset(_ payload: inout ByteBuffer, frame: String) throws(ExecStreamError) -> (RemoteCommandChannel, UInt64) {
        guard payload.readableBytes == 9, let channel = payload.readInteger(as: UInt8.self).flatMap(RemoteCommandChannel.init(rawValue:)),
            channel == .stdout || channel == .stderr, let offset = payload.readInteger(endianness: .big, as: UInt64.self)
        else {
            throw ExecStreamError(code: .malformedInput, message: "a \(frame) frame must name stdout or stderr and hold one offset")
        }
        return (channel, offset)
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
