import ExecStreamCore
public import ExecStreamHTTP2
public import ExecStreamProtos
import NIOCore
public import SwiftProtobuf

/// Why a client call failed.
public struct ClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable code, for `--json` output and scripts.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        /// The server could not be reached, or the connection broke.
        public static let unavailable = Code(rawValue: "unavailable")
        /// The server answered a gRPC call with a non-OK status; `grpcStatus` says which.
        public static let rpcFailed = Code(rawValue: "rpc_failed")
        /// The command did not finish within its timeout.
        public static let deadlineExceeded = Code(rawValue: "deadline_exceeded")
        /// The server answered something this client cannot understand.
        public static let protocolError = Code(rawValue: "protocol_error")
        /// The streaming endpoint refused the request (an HTTP status, before any streaming).
        public static let streamRefused = Code(rawValue: "stream_refused")
        /// The command could not run in the container.
        public static let commandFailed = Code(rawValue: "command_failed")
        /// The client was asked for something it cannot do (unreadable TLS files, say).
        public static let invalidArgument = Code(rawValue: "invalid_argument")

        public var description: String { self.rawValue }
    }

    /// What kind of failure.
    public var code: Code
    /// One clear line.
    public var message: String
    /// The gRPC status code of an `rpcFailed`.
    public var grpcStatus: Int?
    /// For a command that could not start, the exit code a shell reports for that: 127 (no such
    /// command) or 126 (it cannot run).
    public var exitCode: Int32?

    public init(code: Code, message: String, grpcStatus: Int? = nil, exitCode: Int32? = nil) {
        self.code = code
        self.message = message
        self.grpcStatus = grpcStatus
        self.exitCode = exitCode
    }

    public var description: String { self.message }
}

/// A client of the CRI `runtime.v1` calls the CLI needs, as unary gRPC over one HTTP/2 connection.
public struct CRIClient: Sendable {
    /// The connection the calls (and the streams they lead to) use.
    public let connection: HTTP2ClientConnection

    public init(connection: HTTP2ClientConnection) {
        self.connection = connection
    }

    /// `RuntimeService/Version`.
    public func version() async throws(ClientError) -> Runtime_V1_VersionResponse {
        try await self.unary("/runtime.v1.RuntimeService/Version", Runtime_V1_VersionRequest()).response
    }

    /// `RuntimeService/Exec`: the URL of a one-time exec stream.
    public func exec(_ request: Runtime_V1_ExecRequest) async throws(ClientError) -> Runtime_V1_ExecResponse {
        try await self.unary("/runtime.v1.RuntimeService/Exec", request).response
    }

    /// `RuntimeService/Attach`: the URL of a one-time attach stream.
    public func attach(_ request: Runtime_V1_AttachRequest) async throws(ClientError) -> Runtime_V1_AttachResponse {
        try await self.unary("/runtime.v1.RuntimeService/Attach", request).response
    }

    /// `RuntimeService/PortForward`: the URL of a one-time port-forward stream.
    public func portForward(_ request: Runtime_V1_PortForwardRequest) async throws(ClientError) -> Runtime_V1_PortForwardResponse {
        try await self.unary("/runtime.v1.RuntimeService/PortForward", request).response
    }

    /// `RuntimeService/ContainerStatus`.
    public func containerStatus(_ request: Runtime_V1_ContainerStatusRequest) async throws(ClientError) -> Runtime_V1_ContainerStatusResponse {
        try await self.unary("/runtime.v1.RuntimeService/ContainerStatus", request).response
    }

    /// `RuntimeService/ExecSync`, with the trailers (they report truncated output).
    public func execSync(_ request: Runtime_V1_ExecSyncRequest) async throws(ClientError) -> (
        response: Runtime_V1_ExecSyncResponse, trailers: [HTTP2ClientHeader]
    ) {
        // The server enforces the command's timeout; this deadline only backs it up.
        let deadline = request.timeout > 0 ? "\(request.timeout + 10)S" : nil
        return try await self.unary("/runtime.v1.RuntimeService/ExecSync", request, timeout: deadline)
    }

    /// One unary call: a request message out, one response message and the trailers back.
    public func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ path: String,
        _ request: Request,
        timeout: String? = nil
    ) async throws(ClientError) -> (response: Response, trailers: [HTTP2ClientHeader]) {
        do {
            var headers = [HTTP2ClientHeader("content-type", "application/grpc"), HTTP2ClientHeader("te", "trailers")]
            if let timeout {
                headers.append(HTTP2ClientHeader("grpc-timeout", timeout))
            }
            let stream = try await self.connection.makeStream(method: "POST", path: path, headers: headers)
            let payload: [UInt8] = try request.serializedBytes()
            var message = ByteBuffer()
            GRPCWire.writeMessagePrefix(byteCount: payload.count, into: &message)
            message.writeBytes(payload)
            do {
                try await stream.write(message)
            } catch {
                // A server may answer before it reads the request (a refusal) and then reset the
                // stream with NO_ERROR (RFC 9113 §8.1): the answer is still to be read below.
            }
            stream.finish()

            var body = ByteBuffer()
            var metadata: [HTTP2ClientHeader] = []
            var status = 0
            for try await event in stream.response {
                switch event {
                case .head(let code, let headers):
                    status = code
                    metadata = headers
                case .data(let chunk):
                    body.writeImmutableBuffer(chunk)
                case .trailers(let trailers):
                    metadata += trailers
                }
            }
            guard status == 200 else {
                throw ClientError(code: .protocolError, message: "\(path): HTTP status \(status)")
            }
            guard let grpcStatus = metadata[first: "grpc-status"].flatMap({ Int($0) }) else {
                throw ClientError(code: .protocolError, message: "\(path): the response has no grpc-status")
            }
            guard grpcStatus == 0 else {
                let text = GRPCWire.percentDecode(metadata[first: "grpc-message"] ?? "")
                throw ClientError(
                    code: grpcStatus == 4 ? .deadlineExceeded : .rpcFailed,
                    message: text.isEmpty ? "\(path) failed with gRPC status \(grpcStatus)" : text,
                    grpcStatus: grpcStatus,
                    exitCode: metadata[first: "execstream-exit-code"].flatMap { Int32($0) }
                )
            }
            var deframer = GRPCMessageDeframer()
            guard let bytes = try deframer.decode(buffer: &body) else {
                throw ClientError(code: .protocolError, message: "\(path): the response has no message")
            }
            let response = try Response(serializedBytes: Array(bytes.readableBytesView))
            return (response, metadata)
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(code: .unavailable, message: "\(path): \(error)")
        }
    }
}
