/// The one error type of the HTTP/2 transport layer.
public struct HTTP2TransportError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong. A struct over a private enum, so codes can be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: String, Hashable, Sendable {
            case streamReset
            case connectionClosed
            case invalidUse
            case nghttp2Failure
        }

        private let wrapped: Wrapped

        private init(_ wrapped: Wrapped) {
            self.wrapped = wrapped
        }

        /// The stream was reset (by the peer, or by us); `http2ErrorCode` says why.
        public static let streamReset = Code(.streamReset)
        /// The connection closed before the stream finished.
        public static let connectionClosed = Code(.connectionClosed)
        /// The API was used out of order (a body before the head, a write after finish).
        public static let invalidUse = Code(.invalidUse)
        /// nghttp2 refused an operation.
        public static let nghttp2Failure = Code(.nghttp2Failure)

        public var description: String { self.wrapped.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// Details for humans.
    public var message: String
    /// The HTTP/2 error code of a reset (RFC 9113 §7), when there was one.
    public var http2ErrorCode: UInt32?

    public init(code: Code, message: String, http2ErrorCode: UInt32? = nil) {
        self.code = code
        self.message = message
        self.http2ErrorCode = http2ErrorCode
    }

    public var description: String {
        if let http2ErrorCode {
            return "\(self.code) (HTTP/2 error \(http2ErrorCode)): \(self.message)"
        }
        return "\(self.code): \(self.message)"
    }
}

/// HTTP/2 error codes (RFC 9113 §7) used by the transport.
public enum HTTP2ErrorCode {
    /// NO_ERROR
    public static let noError: UInt32 = 0x0
    /// PROTOCOL_ERROR
    public static let protocolError: UInt32 = 0x1
    /// INTERNAL_ERROR
    public static let internalError: UInt32 = 0x2
    /// FLOW_CONTROL_ERROR
    public static let flowControlError: UInt32 = 0x3
    /// REFUSED_STREAM
    public static let refusedStream: UInt32 = 0x7
    /// CANCEL
    public static let cancel: UInt32 = 0x8
    /// ENHANCE_YOUR_CALM
    public static let enhanceYourCalm: UInt32 = 0xB

    /// RFC 9113's name for `code` (`NO_ERROR`, `CANCEL`, …), or its hex value for a code the RFC
    /// does not name: a bounded set, fit for a metric label.
    public static func name(of code: UInt32) -> String {
        let names = [
            "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR",
            "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
        ]
        return code < names.count ? names[Int(code)] : "UNKNOWN"
    }
}
