import NIOCore

/// What a client did, whatever its protocol: the whole vocabulary an adapter speaks towards its
/// session. Adapters decode their wire format into these and hand them to `SessionInput`; what
/// each one means (for stdin, for the process, for the channels) is decided there, once, for
/// every transport.
enum ClientEvent: Sendable {
    /// Bytes of the client's stdin.
    case stdin(ByteBuffer)
    /// The client ended its stdin (a close frame, FIN on the stdin stream, END_STREAM).
    case stdinClosed
    /// Bytes of the client's resize channel: JSON terminal sizes, split anywhere.
    case resize(ByteBuffer)
    /// The client is gone before the session ended it.
    case gone(ClientGoneReason)
}

/// Why a client is gone. The session treats every reason alike (an exec's process group is
/// killed, an attach lets go of the container's channels); the reason is for logs and metrics.
enum ClientGoneReason: Sendable, Hashable, CustomStringConvertible {
    /// The client closed the session (a WebSocket close frame, the end of its request) without
    /// waiting for the status.
    case closed
    /// The client reset its stream (HTTP/2 RST_STREAM, SPDY RST_STREAM).
    case reset
    /// The connection went away.
    case connectionLost
    /// The client broke the protocol; the adapter has answered it on the wire.
    case protocolError(String)

    var description: String {
        switch self {
        case .closed: "closed by the client"
        case .reset: "reset by the client"
        case .connectionLost: "connection lost"
        case .protocolError(let message): "protocol error: \(message)"
        }
    }
}

/// What an adapter does after handing over a client event.
enum ClientInputVerdict: Sendable, Hashable {
    /// Read on.
    case readMore
    /// The process is behind on its stdin: read nothing more from the client until
    /// `SessionInput.whenReadable` (or `readable()`) says so. This is what bounds memory and
    /// makes the client's flow control (or, without any, the socket) hold it back.
    case pauseReading
}
