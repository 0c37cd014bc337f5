/// The one error type of the core layer: registries, token cache and wire codecs.
///
/// Like `RPCError` in grpc-swift, it is a `code` (an open set: new codes do not break callers),
/// a human-readable `message`, and an optional underlying `cause`. The server assembly maps each
/// code to HTTP and gRPC status in exactly one place; nothing else in the core knows about wire
/// status codes. Equality ignores `cause`.
public struct ExecStreamError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure this is. A struct over a private enum, so codes can be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The codes as a closed set, for the package's one mapping to wire codes (an exhaustive
        /// switch there); callers outside the package see only the open `Code`.
        package enum Kind: String, Hashable, Sendable {
            case notFound
            case alreadyExists
            case resourceExhausted
            case invalidArgument
            case malformedInput
            case messageTooLarge
            case failedPrecondition
            case preempted
            case internalError
        }

        /// Which code this is, as a closed set (see `Kind`).
        package let kind: Kind

        private init(_ kind: Kind) {
            self.kind = kind
        }

        /// The thing named does not exist (unknown token, container or channel). HTTP 404, gRPC NOT_FOUND.
        public static let notFound = Code(.notFound)
        /// The thing named exists already. gRPC ALREADY_EXISTS.
        public static let alreadyExists = Code(.alreadyExists)
        /// A bounded resource is full (the token cache). HTTP 429, gRPC RESOURCE_EXHAUSTED.
        public static let resourceExhausted = Code(.resourceExhausted)
        /// A request is invalid on its face (a missing field, a contradiction). gRPC INVALID_ARGUMENT.
        public static let invalidArgument = Code(.invalidArgument)
        /// Bytes from a peer could not be decoded (a bad frame, bad base64, broken JSON).
        public static let malformedInput = Code(.malformedInput)
        /// A peer sent a frame or object larger than the configured limit.
        public static let messageTooLarge = Code(.messageTooLarge)
        /// The request is valid but the target is not in a state to serve it (container not running).
        public static let failedPrecondition = Code(.failedPrecondition)
        /// A newer stream for the same channel took over (newest attach wins). gRPC ABORTED.
        public static let preempted = Code(.preempted)
        /// A bug or an unexpected failure of our own.
        public static let internalError = Code(.internalError)

        public var description: String { self.kind.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A sentence for humans; it may reach clients, so it never holds secrets such as tokens.
    public var message: String
    /// The underlying error, if any. Not part of equality.
    public var cause: (any Error)?

    public init(code: Code, message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause {
            return "\(self.code): \(self.message) (cause: \(cause))"
        }
        return "\(self.code): \(self.message)"
    }

    public static func == (lhs: ExecStreamError, rhs: ExecStreamError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.code)
        hasher.combine(self.message)
    }
}
