import ExecStreamCore
import ExecStreamProcess
import GRPCCore

// The one place where errors of the lower layers become gRPC status codes.

extension RPCError {
    /// The core layer's errors, by code.
    init(_ error: ExecStreamError) {
        let code: RPCError.Code
        switch error.code {
        case .notFound: code = .notFound
        case .alreadyExists: code = .alreadyExists
        case .resourceExhausted: code = .resourceExhausted
        case .invalidArgument, .malformedInput: code = .invalidArgument
        case .messageTooLarge: code = .resourceExhausted
        case .failedPrecondition: code = .failedPrecondition
        default: code = .internalError
        }
        self.init(code: code, message: error.message, cause: error)
    }

    /// A process that could not be started is the caller's command's fault unless the system failed.
    init(_ error: ProcessError) {
        let code: RPCError.Code
        switch error.code {
        case .executableNotFound, .spawnFailed: code = .unknown
        default: code = .internalError
        }
        self.init(code: code, message: error.message, cause: error)
    }
}
