import ExecStreamCore
import ExecStreamRemoteCommand
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
    /// Counts sessions (as their observer) and refusals.
    let metrics: ServerMetrics
    /// Writes every session's end to the audit log (as its observer).
    let audit: AuditLog
    /// Who is on the connection this endpoint serves (set by its router), for the audit log.
    var peer = "unknown"
    /// The request's Kubernetes audit ID, for the audit log (see `forRequest`).
    private(set) var auditID: String?
    /// Sessions log with it; a connection's router adds its peer.
    var logger: Logger

    /// This endpoint for one request: its sessions carry the request's `Audit-Id` header, which
    /// the Kubernetes API server sets and the kubelet's streaming proxy passes on.
    func forRequest(auditID: String?) -> StreamingEndpoint {
        var endpoint = self
        endpoint.auditID = auditID.map { String($0.prefix(128)) }
        return endpoint
    }

    /// Serves one HTTP/2 request for `kind` with `token` (native framing, or WebSocket over
    /// extended CONNECT); on the stream's event loop. Admission first (`StreamingAdmission`:
    /// 404, 400/405/415, 403), then native's own headers (400), then the slot (429) and the token.
    func serve(_ stream: HTTP2ServerStream, kind: StreamingRequestKind, token: String) {
        let head = stream.head
        let endpoint = self.forRequest(auditID: head.headers[first: "audit-id"])
        endpoint.serveRequest(stream, kind: kind, token: token)
    }

    private func serveRequest(_ stream: HTTP2ServerStream, kind: StreamingRequestKind, token: String) {
        let head = stream.head
        let carrier: StreamingCarrier =
            head.method == "CONNECT"
            ? .http2ExtendedConnect(protocol: head.extendedConnectProtocol, webSocketSubprotocols: head.headers[all: "sec-websocket-protocol"])
            : .http2(method: head.method, contentType: head.headers[first: "content-type"])
        let admitted: StreamingProtocol
        switch self.admit(kind: kind, token: token, carrier: carrier) {
        case .success(let chosen):
            admitted = chosen
        case .failure(let refusal):
            StreamRouter.respond(stream, refusal)
            return
        }
        switch admitted {
        case .native:
            self.serveNative(stream, kind: kind, token: token)
        case .webSocket, .webSocketPortForward, .spdyOverWebSocket:
            switch AcceptedUpgrade.redeem(admitted, kind: kind, token: token, overHTTP2: true, streaming: self) {
            case .success(let accepted):
                self.serveWebSocket(stream, accepted: accepted, subprotocol: admitted.acceptedProtocolName)
            case .failure(let error):
                StreamRouter.respond(stream, error)
            }
        case .spdy, .spdyPortForward:
            // HTTP/1.1 upgrades only: the admission never chooses them for an HTTP/2 carrier.
            StreamRouter.respond(stream, HTTPErrorResponse(.upgradeRequired))
        }
    }

    /// WebSocket over an HTTP/2 stream (RFC 8441): the CONNECT is answered 200, and the stream,
    /// as an `HTTP2StreamChannel`, gets the very handlers an upgraded HTTP/1.1 connection gets.
    private func serveWebSocket(_ stream: HTTP2ServerStream, accepted: AcceptedUpgrade, subprotocol: String?) {
        var headers = HTTP2Headers()
        if let subprotocol {
            headers.add(name: "sec-websocket-protocol", value: subprotocol)
        }
        stream.sendResponseHead(status: 200, headers: headers)
        let handlers = AcceptedUpgrade.webSocketCodec() + accepted.handlers(self)
        if case .failure(let error) = HTTP2StreamChannel.serve(stream, initialize: { channel in
            try channel.pipeline.syncOperations.addHandlers(handlers)
        }) {
            self.logger.debug("websocket over HTTP/2: handlers not installed", metadata: ["error": "\(error)"])
        }
    }

    /// Native framing: its own headers (a bad terminal size, resumable or stdin-credit flag is
    /// 400, checked before the token is spent), then the slot and the token.
    private func serveNative(_ stream: HTTP2ServerStream, kind: StreamingRequestKind, token: String) {
        let initialTerminalSize: TerminalSize?
        let mode: NativeHTTP2SessionAdapter.Mode
        do {
            initialTerminalSize = try NativeHTTP2SessionAdapter.initialTerminalSize(in: stream.head)
            mode = try NativeHTTP2SessionAdapter.mode(of: stream.head, kind: kind)
        } catch {
            StreamRouter.respond(stream, HTTPErrorResponse(error))
            return
        }
        // A resumable attach is counted apart: each of a client's (re)connections is one.
        switch self.prepare(kind: kind, token: token, transport: mode == .resumable ? "native-resumable" : "native") {
        case .success(let prepared):
            NativeHTTP2SessionAdapter.serve(
                stream,
                plan: prepared.plan,
                initialTerminalSize: initialTerminalSize,
                mode: mode,
                registry: self.registry,
                logger: self.logger,
                onRelease: prepared.release
            )
        case .failure(let error):
            StreamRouter.respond(stream, error)
        }
    }

    /// The admission decision for every carrier: the token is looked at, never spent. A refusal
    /// is counted here, once for every carrier.
    func admit(kind: StreamingRequestKind, token: String, carrier: StreamingCarrier) -> Result<StreamingProtocol, HTTPErrorResponse> {
        let redeemable = self.requests.isRedeemable(StreamingToken(rawValue: token), kind: kind)
        return StreamingAdmission.decide(kind: kind, tokenRedeemable: redeemable, carrier: carrier).mapError { refusal in
            let response = HTTPErrorResponse(refusal)
            self.metrics.refused(status: response.status)
            return response
        }
    }

    /// The last checks of an exec or attach, once the protocol's own passed (see `redeem`).
    /// `transport` names the chosen protocol for the session's observers.
    func prepare(kind: StreamingRequestKind, token: String, transport: String) -> Result<PreparedSession, HTTPErrorResponse> {
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
                containerID: container.spec.id,
                target: target,
                tty: streams.tty,
                stdin: streams.stdin,
                stdout: streams.stdout,
                stderr: streams.stderr,
                stdinOnce: container.spec.mainProcess?.stdinOnce == true,
                postExitDrain: self.policy.postExitDrain,
                killProcessGroupWhenClientVanishes: self.policy.killProcessGroupWhenClientVanishes,
                processes: self.supervisor.processes(of: container.spec),
                transport: transport,
                observer: SessionObservers([self.metrics, self.audit]),
                peer: self.peer,
                auditID: self.auditID
            )
        }.map { PreparedSession(plan: $0.value, release: $0.release) }
    }

    /// The last checks of a port-forward (see `redeem`); its ports must be 1-65535. `transport`
    /// names the chosen protocol for the session's observers.
    func preparePortForward(token: String, transport: String) -> Result<PortForwardSession, HTTPErrorResponse> {
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
        }.map {
            PortForwardSession(
                sandboxID: $0.value.0.id,
                ports: $0.value.1,
                transport: transport,
                peer: self.peer,
                auditID: self.auditID,
                observer: SessionObservers([self.metrics, self.audit]),
                release: $0.release
            )
        }
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
            self.metrics.refused(status: 429)
            return .failure(HTTPErrorResponse(error, retryAfterSeconds: 1))
        }
        let sessions = self.sessions
        do throws(ExecStreamError) {
            let value = try resolve(try self.requests.consume(StreamingToken(rawValue: token), kind: kind))
            self.logger.debug("streaming session", metadata: ["kind": "\(kind.rawValue)"])
            return .success((value, { sessions.release() }))
        } catch {
            sessions.release()
            let response = HTTPErrorResponse(error)
            self.metrics.refused(status: response.status)
            return .failure(response)
        }
    }
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

    /// Sessions open now (exec, attach and port-forward).
    var openCount: Int {
        self.open.withLock { $0 }
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
