import ExecStreamCore
import ExecStreamHTTP2
import Logging
import NIOCore

/// Serves `/exec/{token}` and `/attach/{token}`: takes the token's cached CRI request (single use)
/// and starts a session in the protocol the client speaks. Anything wrong with the token is
/// answered before any streaming, as the kubelet streaming library does (404, or 429 when full).
struct StreamingEndpoint: Sendable {
    let requests: StreamingRequestCache
    let containers: ContainerStore
    let registry: ChannelRegistry
    let logger: Logger

    /// Serves one HTTP/2 request for `kind` with `token`; on the stream's event loop.
    func serve(_ stream: HTTP2ServerStream, kind: StreamingRequestKind, token: String) {
        let head = stream.head
        guard head.method == "POST" else {
            StreamRouter.respond(stream, status: 405, headers: ["allow": "POST"], body: "streaming over HTTP/2 uses POST\n")
            return
        }
        let contentType = head.headers[first: "content-type"]?.split(separator: ";").first.map { $0.trimmingWhitespace() }
        guard contentType == NativeHTTP2SessionClient.contentType else {
            // Checked before the token is taken: a client that got the format wrong may retry.
            StreamRouter.respond(stream, status: 415, body: "content-type must be \(NativeHTTP2SessionClient.contentType)\n")
            return
        }
        let request: StreamingRequest
        let initialTerminalSize: TerminalSize?
        do {
            initialTerminalSize = try NativeHTTP2SessionClient.initialTerminalSize(in: head)
            request = try self.requests.consume(StreamingToken(rawValue: token), kind: kind)
        } catch {
            StreamRouter.respond(stream, HTTPErrorResponse(error))
            return
        }
        switch request {
        case .exec(let containerID, let command, let tty, let stdin, let stdout, let stderr):
            let container: ContainerRecord
            do {
                container = try self.containers.container(containerID)
            } catch {
                StreamRouter.respond(stream, HTTPErrorResponse(error))
                return
            }
            let plan = ExecSessionPlan(container: container.spec, command: command, tty: tty, stdin: stdin, stdout: stdout, stderr: stderr)
            NativeHTTP2SessionClient.serve(stream, plan: plan, initialTerminalSize: initialTerminalSize, registry: self.registry, logger: self.logger)
        case .attach, .portForward:
            // The request kinds match their routes; attach to main processes is not served yet.
            StreamRouter.respond(
                stream,
                HTTPErrorResponse(ExecStreamError(code: .failedPrecondition, message: "\(kind.rawValue) is not served over native HTTP/2 yet"))
            )
        }
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
