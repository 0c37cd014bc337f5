/// The one error type of the server assembly layer (listeners, configuration, lifecycle).
public struct ServerError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong. A struct over a private enum, so codes can be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: String, Hashable, Sendable {
            case invalidConfiguration
            case addressInUse
            case bindFailed
        }

        private let wrapped: Wrapped

        private init(_ wrapped: Wrapped) {
            self.wrapped = wrapped
        }

        /// A flag, a config file entry or an address is invalid.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// Another server is already listening on a unix socket path.
        public static let addressInUse = Code(.addressInUse)
        /// A listener could not be bound.
        public static let bindFailed = Code(.bindFailed)

        public var description: String { self.wrapped.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// One clear line for the operator.
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { self.message }
}
