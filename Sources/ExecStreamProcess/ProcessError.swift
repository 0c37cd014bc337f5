/// The one error type of the process layer.
public struct ProcessError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong. A struct over a private enum, so codes can be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The codes as a closed set, for the package's one mapping to wire codes (an exhaustive
        /// switch there); callers outside the package see only the open `Code`.
        package enum Kind: String, Hashable, Sendable {
            case executableNotFound
            case notExecutable
            case spawnFailed
            case systemCallFailed
        }

        /// Which code this is, as a closed set (see `Kind`).
        package let kind: Kind

        private init(_ kind: Kind) {
            self.kind = kind
        }

        /// The command names no executable file (on PATH, or at its path).
        public static let executableNotFound = Code(.executableNotFound)
        /// The command names a file that cannot be run: no permission, not a program, a missing
        /// interpreter.
        public static let notExecutable = Code(.notExecutable)
        /// The child could not be started; `step` says where it failed.
        public static let spawnFailed = Code(.spawnFailed)
        /// A system call around the spawn failed (pipe, pty, epoll).
        public static let systemCallFailed = Code(.systemCallFailed)

        public var description: String { self.kind.rawValue }
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

    /// The exit code a shell reports for a command that could not start (POSIX, as bash, docker and
    /// podman do): 127 when no such command exists, 126 when it exists but cannot run. Nil when the
    /// failure is not the command's but the system's.
    public var shellExitCode: UInt8? {
        switch self.code.kind {
        case .executableNotFound: 127
        case .notExecutable: 126
        case .spawnFailed, .systemCallFailed: nil
        }
    }
}
