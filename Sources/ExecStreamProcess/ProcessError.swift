/// The one error type of the process layer.
public struct ProcessError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong. A struct over a private enum, so codes can be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: String, Hashable, Sendable {
            case executableNotFound
            case spawnFailed
            case systemCallFailed
        }

        private let wrapped: Wrapped

        private init(_ wrapped: Wrapped) {
            self.wrapped = wrapped
        }

        /// The command names no executable file (on PATH, or at its path).
        public static let executableNotFound = Code(.executableNotFound)
        /// The child could not be started; `step` says where it failed.
        public static let spawnFailed = Code(.spawnFailed)
        /// A system call around the spawn failed (pipe, pty, epoll).
        public static let systemCallFailed = Code(.systemCallFailed)

        public var description: String { self.wrapped.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// One clear sentence, fit for a client ("exec: \"nope\": executable file not found in $PATH").
    public var message: String
    /// The errno behind it, if any.
    public var errno: Int32?

    public init(code: Code, message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String { self.message }
}
