/// How a process ended, and the exit code a remote client is told.
public enum ProcessExitStatus: Hashable, Sendable, CustomStringConvertible {
    /// It called exit with this code (0–255).
    case exited(Int32)
    /// A signal killed it.
    case signaled(Int32)

    /// The code clients see, always 0–255 (client-go parses it as uint8): the exit code, or
    /// 128 + n for death by signal n, as shells report it.
    public var remoteExitCode: UInt8 {
        switch self {
        case .exited(let code):
            return UInt8(truncatingIfNeeded: code)
        case .signaled(let signal):
            return UInt8(truncatingIfNeeded: 128 + Int(signal))
        }
    }

    public var description: String {
        switch self {
        case .exited(let code):
            return "exited with code \(code)"
        case .signaled(let signal):
            return "killed by signal \(signal)"
        }
    }
}
