public import NIOCore

/// Why a WebSocket connection fails, with the close code RFC 6455 §7.4.1 gives it. The one place
/// where WebSocket failures become close codes, for both carriers.
public enum WebSocketFailure: Error, Hashable, Sendable {
    /// A frame or a sequence of frames the protocol forbids: 1002.
    case protocolError(String)
    /// A text message that is not UTF-8: 1007.
    case invalidPayload(String)
    /// A message above the limit: 1009.
    case messageTooBig(String)

    /// The close code to fail the connection with.
    public var closeCode: UInt16 {
        switch self {
        case .protocolError: return 1002
        case .invalidPayload: return 1007
        case .messageTooBig: return 1009
        }
    }

    /// The reason sent in the close frame.
    public var reason: String {
        switch self {
        case .protocolError(let reason), .invalidPayload(let reason), .messageTooBig(let reason): return reason
        }
    }

    /// A frame decoder's error as a failure: too large is 1009, anything else 1002.
    public init(_ error: ExecStreamError) {
        self = error.code == .messageTooLarge ? .messageTooBig(error.message) : .protocolError(error.message)
    }
}

/// Joins a client's data frames into messages (RFC 6455 §5.4), for both carriers: a continuation
/// with no message to continue, or a new message inside a fragmented one, is a protocol error;
/// a message above `maxMessageByteCount` fails as soon as its fragments pass it (nothing more is
/// buffered); a text message must be UTF-8. Control frames are not its business.
public struct WebSocketMessageAssembler: Sendable {
    /// One whole message.
    public struct Message: Hashable, Sendable {
        /// Text or binary.
        public var isText: Bool
        /// The payload of all its frames.
        public var payload: ByteBuffer

        public init(isText: Bool, payload: ByteBuffer) {
            self.isText = isText
            self.payload = payload
        }
    }

    /// The largest message accepted.
    public let maxMessageByteCount: Int
    private var partial: (isText: Bool, payload: ByteBuffer)?

    public init(maxMessageByteCount: Int = 16 << 20) {
        self.maxMessageByteCount = maxMessageByteCount
    }

    /// Takes one data frame (text, binary or continuation); returns the message it completes.
    public mutating func receive(opcode: WebSocketFrameOpcode, fin: Bool, payload: ByteBuffer) throws(WebSocketFailure) -> Message? {
        var message: (isText: Bool, payload: ByteBuffer)
        switch (opcode, self.partial) {
        case (.continuation, nil):
            throw .protocolError("a continuation frame without a message to continue")
        case (.continuation, var partial?):
            guard partial.payload.readableBytes + payload.readableBytes <= self.maxMessageByteCount else {
                self.partial = nil
                throw .messageTooBig("a WebSocket message above \(self.maxMessageByteCount) bytes")
            }
            partial.payload.writeImmutableBuffer(payload)
            message = partial
        case (.text, .some), (.binary, .some):
            throw .protocolError("a new message inside a fragmented one")
        case (.text, nil), (.binary, nil):
            guard payload.readableBytes <= self.maxMessageByteCount else {
                throw .messageTooBig("a WebSocket message above \(self.maxMessageByteCount) bytes")
            }
            message = (opcode == .text, payload)
        case (.close, _), (.ping, _), (.pong, _):
            preconditionFailure("control frames are not assembled")
        }
        guard fin else {
            self.partial = message
            return nil
        }
        self.partial = nil
        if message.isText && String(validating: message.payload.readableBytesView, as: UTF8.self) == nil {
            throw .invalidPayload("a text message that is not UTF-8")
        }
        return Message(isText: message.isText, payload: message.payload)
    }
}
