import ExecStreamCore
import ExecStreamProcess
import GRPCCore

// The one place where errors of the lower layers become gRPC and HTTP status codes. The switches
// are exhaustive over each code's closed `Kind` (package-visible), so a new code cannot be added
// without deciding here what it means on the wire.

extension RPCError {
    /// The core layer's errors, by code.
    init(_ error: ExecStreamError) {
        let code: RPCError.Code
        switch error.code.kind {
        case .notFound: code = .notFound
        case .alreadyExists: code = .alreadyExists
        case .resourceExhausted: code = .resourceExhausted
        case .invalidArgument, .malformedInput: code = .invalidArgument
        case .messageTooLarge: code = .resourceExhausted
        case .failedPrecondition: code = .failedPrecondition
        case .preempted: code = .aborted
        case .internalError: code = .internalError
        }
        self.init(code: code, message: error.message, cause: error)
    }

    /// A process that could not be started is the caller's command's fault unless the system
    /// failed. The shell's exit code for it (126, 127) goes in `execstream-exit-code`.
    init(_ error: ProcessError) {
        let code: RPCError.Code
        switch error.code.kind {
        case .executableNotFound, .notExecutable, .spawnFailed: code = .unknown
        case .systemCallFailed: code = .internalError
        }
        var metadata = Metadata()
        if let exitCode = error.shellExitCode {
            metadata.addString(String(exitCode), forKey: "execstream-exit-code")
        }
        self.init(code: code, message: error.message, metadata: metadata, cause: error)
    }
}

/// An error answer to a plain HTTP request, before any streaming began.
struct HTTPErrorResponse: Error, Hashable, Sendable {
    var status: Int
    var body: String
    /// Headers besides the content type and length (`Retry-After`, `X-Accepted-Stream-Protocol-Versions`).
    var additionalHeaders: [String: String] = [:]

    /// `additionalHeaders` in a stable order.
    var headers: [(String, String)] {
        self.additionalHeaders.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// A refused streaming request (`StreamingAdmission`), as the kubelet streaming library and
    /// x/net/websocket answer it.
    init(_ refusal: AdmissionRefusal) {
        switch refusal {
        case .unknownToken(let kind):
            self.init(ExecStreamError(code: .notFound, message: "unknown or expired \(kind.rawValue) token"))
        case .upgradeRequired:
            self.init(status: 400, body: "a streaming URL needs an upgrade: WebSocket (or SPDY/3.1), or HTTP/2\n")
        case .methodNotAllowed:
            self.init(status: 405, body: "streaming over HTTP/2 uses POST\n", additionalHeaders: ["allow": "POST"])
        case .unsupportedContentType:
            self.init(status: 415, body: "content-type must be \(StreamingAdmission.nativeContentType)\n")
        case .webSocketProtocolRequired:
            self.init(status: 400, body: "CONNECT on a streaming URL needs :protocol websocket (RFC 8441)\n")
        case .streamProtocolRequired:
            self.init(status: 400, body: "X-Stream-Protocol-Version is required for a SPDY upgrade\n")
        case .portForwardNeedsWebSocket:
            self.init(status: 400, body: "port-forward is served over WebSocket (HTTP/1.1 or HTTP/2) and SPDY/3.1, not in native framing\n")
        case .noServedSubprotocol:
            let served = KubernetesChannelProtocol.allCases.map(\.rawValue).filter { !$0.isEmpty }.joined(separator: ", ")
            self.init(status: 403, body: "none of the offered subprotocols is served: \(served)\n")
        case .noServedStreamProtocol(let served):
            let list = served.joined(separator: ", ")
            self.init(
                status: 403,
                body: "none of the offered stream protocols is served: \(list)\n",
                additionalHeaders: ["X-Accepted-Stream-Protocol-Versions": list]
            )
        }
    }

    /// A response of its own.
    init(status: Int, body: String, additionalHeaders: [String: String] = [:]) {
        self.status = status
        self.body = body
        self.additionalHeaders = additionalHeaders
    }

    /// The kubelet streaming library's mapping: NotFound → 404 with Go's "404 page not found",
    /// ResourceExhausted → 429 with `Retry-After` (60 s unless said), anything else → its own
    /// status with the message.
    init(_ error: ExecStreamError, retryAfterSeconds: Int = 60) {
        switch error.code.kind {
        case .notFound:
            self.status = 404
            self.body = StreamRouter.notFoundBody
        case .resourceExhausted:
            self.status = 429
            self.body = error.message + "\n"
            self.additionalHeaders["retry-after"] = String(retryAfterSeconds)
        case .invalidArgument, .malformedInput:
            self.status = 400
            self.body = error.message + "\n"
        case .messageTooLarge:
            self.status = 413
            self.body = error.message + "\n"
        case .alreadyExists, .failedPrecondition, .preempted, .internalError:
            self.status = 500
            self.body = error.message + "\n"
        }
    }
}
