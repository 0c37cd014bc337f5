public import NIOCore

/// The WebSocket subprotocols of Kubernetes remote command (PROTOCOLS.md §3c, §3d), and what
/// each one implies for framing, errors, resize and stdin close.
public enum KubernetesChannelProtocol: String, Hashable, Sendable, CaseIterable {
    /// No `Sec-WebSocket-Protocol` header: binary framing, v1 semantics.
    case unnamed = ""
    /// `channel.k8s.io`: binary framing, v1 semantics.
    case v1 = "channel.k8s.io"
    /// `base64.channel.k8s.io`: base64 text framing, v1 semantics.
    case v1Base64 = "base64.channel.k8s.io"
    /// `v4.channel.k8s.io`: binary framing, JSON status, resize channel.
    case v4 = "v4.channel.k8s.io"
    /// `v4.base64.channel.k8s.io`: base64 text framing, JSON status, resize channel.
    case v4Base64 = "v4.base64.channel.k8s.io"
    /// `v5.channel.k8s.io`: as v4, plus the CLOSE message `[0xFF, channel]`.
    case v5 = "v5.channel.k8s.io"

    /// Whether messages are text frames: an ASCII channel digit followed by standard base64.
    public var isBase64: Bool {
        switch self {
        case .v1Base64, .v4Base64:
            return true
        case .unnamed, .v1, .v4, .v5:
            return false
        }
    }

    /// Whether the error channel carries `metav1.Status` JSON (v4+) rather than plain text.
    public var usesStatusJSON: Bool {
        switch self {
        case .v4, .v4Base64, .v5:
            return true
        case .unnamed, .v1, .v1Base64:
            return false
        }
    }

    /// Whether the client may close a channel with `[0xFF, channel]`.
    public var supportsClose: Bool {
        switch self {
        case .v5:
            return true
        case .unnamed, .v1, .v1Base64, .v4, .v4Base64:
            return false
        }
    }

    /// Picks the first protocol the client offered that we serve; the client's order wins.
    /// `headerValues` are the `Sec-WebSocket-Protocol` header values, each a comma list. No header
    /// selects `.unnamed`; offers with no match select nothing (the caller answers 403).
    public static func negotiate(headerValues: [String]) -> KubernetesChannelProtocol? {
        let offers = headerValues.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
            .map { String($0).trimmingASCIIWhitespace() }
            .filter { !$0.isEmpty }
        guard !offers.isEmpty else { return .unnamed }
        return offers.lazy.compactMap { KubernetesChannelProtocol(rawValue: $0) }.first
    }
}

/// The remote-command protocol versions of SPDY's `X-Stream-Protocol-Version` (PROTOCOLS.md §3a,
/// §3d). The streams are identified by their `streamtype` header, not by these numbers.
public enum SPDYRemoteCommandProtocol: String, Hashable, Sendable, CaseIterable {
    /// `v5.channel.k8s.io`: treated as v4 over SPDY.
    case v5 = "v5.channel.k8s.io"
    /// `v4.channel.k8s.io`: JSON status, resize stream.
    case v4 = "v4.channel.k8s.io"
    /// `v3.channel.k8s.io`: plain-text errors, resize stream.
    case v3 = "v3.channel.k8s.io"
    /// `v2.channel.k8s.io`: plain-text errors, no resize.
    case v2 = "v2.channel.k8s.io"
    /// `channel.k8s.io`: v1.
    case v1 = "channel.k8s.io"

    /// Whether a tty session has a resize stream.
    public var hasResizeStream: Bool {
        switch self {
        case .v5, .v4, .v3: return true
        case .v2, .v1: return false
        }
    }

    /// Whether the error stream carries `metav1.Status` JSON (else plain text, only on failure).
    public var usesStatusJSON: Bool {
        switch self {
        case .v5, .v4: return true
        case .v3, .v2, .v1: return false
        }
    }

    /// The first protocol the client listed that we serve (each header value may be a comma
    /// list); nil when none matches.
    public static func negotiate(headerValues: [String]) -> SPDYRemoteCommandProtocol? {
        headerValues.flatMap { $0.split(separator: ",") }
            .lazy
            .map { String($0).trimmingASCIIWhitespace() }
            .compactMap { SPDYRemoteCommandProtocol(rawValue: $0) }
            .first
    }
}

/// The channel numbers of remote command (0–4) and the v5 close marker.
public enum RemoteCommandChannel: UInt8, Hashable, Sendable, CaseIterable {
    /// The process's stdin (client → server).
    case stdin = 0
    /// The process's stdout (server → client).
    case stdout = 1
    /// The process's stderr (server → client).
    case stderr = 2
    /// The error/status channel (server → client).
    case error = 3
    /// Terminal resize JSON (client → server).
    case resize = 4
}

/// One decoded WebSocket message of a Kubernetes channel protocol.
public enum ChannelMessage: Hashable, Sendable {
    /// Payload for a channel. The payload may be empty (the server's first message is).
    case data(RemoteCommandChannel, ByteBuffer)
    /// v5 only: the client closed its side of a channel (for stdin: EOF).
    case close(RemoteCommandChannel)
}

/// Encoding and decoding of Kubernetes channel messages: one channel byte (or ASCII digit for
/// base64) followed by the payload, one message per WebSocket frame. Pure functions.
public enum ChannelMessageCodec {
    /// The WebSocket opcode a server message must be sent with.
    public enum FrameKind: Hashable, Sendable {
        /// A binary frame.
        case binary
        /// A text frame (the base64 protocols).
        case text
    }

    /// The v5 close marker byte.
    public static let closeMarker: UInt8 = 0xFF

    /// Encodes `payload` for `channel` as the body of one WebSocket message.
    public static func encode(
        _ payload: ByteBuffer,
        on channel: RemoteCommandChannel,
        protocol: KubernetesChannelProtocol,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) -> (FrameKind, ByteBuffer) {
        if `protocol`.isBase64 {
            let encoded = Base64.encode(payload.readableBytesView)
            var message = allocator.buffer(capacity: 1 + encoded.count)
            message.writeInteger(UInt8(ascii: "0") + channel.rawValue)
            message.writeBytes(encoded)
            return (.text, message)
        }
        var message = allocator.buffer(capacity: 1 + payload.readableBytes)
        message.writeInteger(channel.rawValue)
        message.writeImmutableBuffer(payload)
        return (.binary, message)
    }

    /// Decodes one client message. Text and binary frames are treated alike: the protocol decides
    /// the encoding. Errors: an empty message, a channel outside 0–4, bad base64, and in v5 a close
    /// message that is not exactly `[0xFF, channel]` (which tears the connection down).
    public static func decode(_ message: ByteBuffer, protocol: KubernetesChannelProtocol) throws(ExecStreamError) -> ChannelMessage {
        guard let first = message.getInteger(at: message.readerIndex, as: UInt8.self) else {
            throw ExecStreamError(code: .malformedInput, message: "empty channel message")
        }
        var payload = message.getSlice(at: message.readerIndex + 1, length: message.readableBytes - 1)!
        if `protocol`.supportsClose && first == self.closeMarker {
            guard payload.readableBytes == 1, let channel = RemoteCommandChannel(rawValue: payload.readInteger()!) else {
                throw ExecStreamError(code: .malformedInput, message: "a close message must be exactly [0xFF, channel 0-4], got \(message.readableBytes) bytes")
            }
            return .close(channel)
        }
        if `protocol`.isBase64 {
            guard first >= UInt8(ascii: "0"), let channel = RemoteCommandChannel(rawValue: first - UInt8(ascii: "0")) else {
                throw ExecStreamError(code: .malformedInput, message: "invalid base64 channel byte 0x\(String(first, radix: 16))")
            }
            let decoded = try Base64.decode(payload.readableBytesView)
            return .data(channel, ByteBuffer(bytes: decoded))
        }
        guard let channel = RemoteCommandChannel(rawValue: first) else {
            throw ExecStreamError(code: .malformedInput, message: "invalid channel \(first)")
        }
        return .data(channel, payload)
    }
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        let bytes = self.utf8
        let isSpace: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        guard let start = bytes.firstIndex(where: { !isSpace($0) }), let end = bytes.lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[start...end])
    }
}
