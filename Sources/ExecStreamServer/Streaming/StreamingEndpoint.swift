import ExecStreamCore
import ExecStreamHTTP2
import Logging
import NIOCore
import Synchronization

/// Serves `/exec/{token}` and `/attach/{token}`: takes the token's cached CRI request (single use)
/// and starts a session in the protocol the client speaks. Anything wrong with the token is
/// answered before any streaming, as the kubelet streaming library does (404, or 429 when full).
struct StreamingEndpoint: Sendable {
    let requests: StreamingRequestCache
    let containers: ContainerStore
    let registry: ChannelRegistry

    /// Live IOChannels in the registry.
    var liveChannelCount: Int { self.registry.channelCount }
    let supervisor: ContainerSupervisor
    let policy: SessionPolicy
    let sessions: SessionSlots
    /// Sessions log with it; a connection's router adds its peer.
    var logger: Logger

    /// Serves one HTTP/2 request for `kind` with `token`; on the stream's event loop.
    func serve(_ stream: HTTP2ServerStream, kind: StreamingRequestKind, token: String) {
        let head = stream.head
        guard self.passesHTTP2Checks(stream, kind: kind, token: token) else { return }
        guard head.method == "POST" else {
            StreamRouter.respond(stream, status: 405, headers: ["allow": "POST"], body: "streaming over HTTP/2 uses POST\n")
            return
        }
        let contentType = head.headers[first: "content-type"]?.split(separator: ";").first.map { $0.trimmingWhitespace() }
        guard contentType == NativeHTTP2SessionClient.contentType else {
            // Checked before the token is spent: a client that got the format wrong may retry.
            StreamRouter.respond(stream, status: 415, body: "content-type must be \(NativeHTTP2SessionClient.contentType)\n")
            return
        }
        let initialTerminalSize: TerminalSize?
        let resumable: Bool
        do {
            initialTerminalSize = try NativeHTTP2SessionClient.initialTerminalSize(in: head)
            resumable = try NativeHTTP2SessionClient.isResumable(head, kind: kind)
        } catch {
            StreamRouter.respond(stream, HTTPErrorResponse(error))
            return
        }
        let prepared: PreparedSession
        switch self.prepare(kind: kind, token: token) {
        case .success(let session):
            prepared = session
        case .failure(let error):
            StreamRouter.respond(stream, error)
            return
        }
        NativeHTTP2SessionClient.serve(
            stream,
            plan: prepared.plan,
            initialTerminalSize: initialTerminalSize,
            resumable: resumable,
            registry: self.registry,
            logger: self.logger,
            onRelease: prepared.release
        )
    }

    /// Serves WebSocket over HTTP/2 (RFC 8441 extended CONNECT) for `kind` with `token`; on the
    /// stream's event loop. The checks are the HTTP/1.1 upgrade's: token (404), `:protocol
    /// websocket` (400), subprotocol (403), session slot (429); then the token is spent.
    func serveWebSocket(_ stream: HTTP2ServerStream, kind: StreamingRequestKind, token: String) {
        guard self.passesHTTP2Checks(stream, kind: kind, token: token) else { return }
        guard stream.head.extendedConnectProtocol == "websocket" else {
            StreamRouter.respond(stream, status: 400, body: "CONNECT on a streaming URL needs :protocol websocket (RFC 8441)\n")
            return
        }
        guard let channelProtocol = KubernetesChannelProtocol.negotiate(headerValues: stream.head.headers[all: "sec-websocket-protocol"]) else {
            StreamRouter.respond(stream, HTTPErrorResponse.forbiddenSubprotocol)
            return
        }
        switch self.prepare(kind: kind, token: token) {
        case .success(let prepared):
            WebSocketHTTP2SessionClient.serve(stream, prepared: prepared, channelProtocol: channelProtocol, registry: self.registry, logger: self.logger)
        case .failure(let error):
            StreamRouter.respond(stream, error)
        }
    }

    /// Port-forward is served over HTTP/1.1 upgrades (WebSocket, SPDY), as clients speak it.
    static let portForwardOverHTTP2 = HTTPErrorResponse(
        status: 400,
        body: "port-forward is served over WebSocket (HTTP/1.1) and SPDY/3.1, not HTTP/2\n"
    )

    /// The first checks on HTTP/2: the token, then the route's kind. False once answered.
    private func passesHTTP2Checks(_ stream: HTTP2ServerStream, kind: StreamingRequestKind, token: String) -> Bool {
        if let error = self.checkToken(kind: kind, token: token) {
            StreamRouter.respond(stream, error)
            return false
        }
        if kind == .portForward {
            StreamRouter.respond(stream, Self.portForwardOverHTTP2)
            return false
        }
        return true
    }

    /// The first check of every protocol: an unknown, expired, spent or wrong-kind token is 404
    /// whatever else is wrong. The token is not spent.
    func checkToken(kind: StreamingRequestKind, token: String) -> HTTPErrorResponse? {
        guard self.requests.isRedeemable(StreamingToken(rawValue: token), kind: kind) else {
            return HTTPErrorResponse(ExecStreamError(code: .notFound, message: "unknown or expired \(kind.rawValue) token"))
        }
        return nil
    }

    /// The last checks of an exec or attach, once the protocol's own passed (see `redeem`).
    func prepare(kind: StreamingRequestKind, token: String) -> Result<PreparedSession, HTTPErrorResponse> {
        self.redeem(kind: kind, token: token) { request throws(ExecStreamError) in
            let containerID: String
            let target: ExecSessionPlan.Target
            let streams: (tty: Bool, stdin: Bool, stdout: Bool, stderr: Bool)
            switch request {
            case .exec(let id, let command, let tty, let stdin, let stdout, let stderr):
                (containerID, target, streams) = (id, .exec(command: command), (tty, stdin, stdout, stderr))
            case .attach(let id, let tty, let stdin, let stdout, let stderr):
                (containerID, target, streams) = (id, .attach, (tty, stdin, stdout, stderr))
            case .portForward:
                throw ExecStreamError(code: .notFound, message: "port-forward is not served on this route")
            }
            let container = try self.containers.container(containerID)
            return ExecSessionPlan(
                container: container.spec,
                target: target,
                tty: streams.tty,
                stdin: streams.stdin,
                stdout: streams.stdout,
                stderr: streams.stderr,
                policy: self.policy,
                supervisor: self.supervisor
            )
        }.map { PreparedSession(plan: $0.value, release: $0.release) }
    }

    /// The last checks of a port-forward (see `redeem`); its ports must be 1-65535.
    func preparePortForward(token: String) -> Result<PreparedPortForward, HTTPErrorResponse> {
        self.redeem(kind: .portForward, token: token) { request throws(ExecStreamError) in
            guard case .portForward(let sandboxID, let ports) = request else {
                throw ExecStreamError(code: .notFound, message: "unknown or expired portforward token")
            }
            let sandbox = try self.containers.container(sandboxID)
            let valid = ports.compactMap { (1...65535).contains($0) ? UInt16($0) : nil }
            guard valid.count == ports.count else {
                throw ExecStreamError(code: .invalidArgument, message: "port-forward ports must be 1-65535")
            }
            return (sandbox.spec, valid)
        }.map { PreparedPortForward(sandbox: $0.value.0, ports: $0.value.1, release: $0.release) }
    }

    /// A session slot (429, token unspent), then the token is spent and its request resolved.
    /// On any failure the slot goes back; on success its release goes with the value.
    private func redeem<Value>(
        kind: StreamingRequestKind,
        token: String,
        resolve: (StreamingRequest) throws(ExecStreamError) -> Value
    ) -> Result<(value: Value, release: @Sendable () -> Void), HTTPErrorResponse> {
        guard self.sessions.reserve() else {
            let error = ExecStreamError(code: .resourceExhausted, message: "too many streaming sessions (\(self.sessions.limit)); retry shortly")
            return .failure(HTTPErrorResponse(error, retryAfterSeconds: 1))
        }
        let sessions = self.sessions
        do throws(ExecStreamError) {
            let value = try resolve(try self.requests.consume(StreamingToken(rawValue: token), kind: kind))
            self.logger.debug("streaming session", metadata: ["kind": "\(kind.rawValue)"])
            return .success((value, { sessions.release() }))
        } catch {
            sessions.release()
            return .failure(HTTPErrorResponse(error))
        }
    }
}

/// A session ready to start: its plan, and the release of its slot (call it exactly once).
struct PreparedSession: Sendable {
    let plan: ExecSessionPlan
    let release: @Sendable () -> Void
}

/// Counts open sessions against `SessionPolicy.maxConcurrentSessions`.
final class SessionSlots: Sendable {
    let limit: Int
    private let open = Mutex(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// Takes a slot; false if all are taken.
    func reserve() -> Bool {
        self.open.withLock { open in
            guard open < self.limit else { return false }
            open += 1
            return true
        }
    }

    /// Gives a slot back.
    func release() {
        self.open.withLock { $0 -= 1 }
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
