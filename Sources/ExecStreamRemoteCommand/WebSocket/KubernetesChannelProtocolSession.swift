import ExecStreamCore
import NIOCore

/// The parts of a Kubernetes channel-protocol session (PROTOCOLS.md §3c, §3d) that do not depend
/// on what carries the WebSocket: HTTP/1.1 (NIOWebSocket) or an HTTP/2 stream (RFC 8441).
struct KubernetesChannelProtocolSession {
    let channelProtocol: KubernetesChannelProtocol

    init(channelProtocol: KubernetesChannelProtocol) {
        self.channelProtocol = channelProtocol
    }

    /// The channel of the empty message sent right after the upgrade: the lowest output channel
    /// the client asked for.
    static func firstChannel(of plan: ExecSessionPlan) -> RemoteCommandChannel {
        plan.stdout ? .stdout : (plan.stderr && !plan.tty ? .stderr : .error)
    }

    /// The client event one client message is; nil for a message that means nothing (empty
    /// stdin, a channel that is not the client's to write: dropped, as upstream does). Throws on
    /// a malformed message (close with 1002).
    func event(for message: ByteBuffer) throws(ExecStreamError) -> ClientEvent? {
        switch try ChannelMessageCodec.decode(message, protocol: self.channelProtocol) {
        case .data(.stdin, let payload):
            return payload.readableBytes > 0 ? .stdin(payload) : nil
        case .data(.resize, let payload):
            return .resize(payload)
        case .close(.stdin):
            return .stdinClosed
        case .data(.stdout, _), .data(.stderr, _), .data(.error, _), .close(.stdout), .close(.stderr), .close(.error), .close(.resize):
            return nil
        }
    }

    /// What goes on the error channel at the end: JSON status for v4+, plain text for the
    /// v1-style protocols and only on failure.
    func statusPayload(for outcome: RemoteCommandOutcome) -> ByteBuffer? {
        if self.channelProtocol.usesStatusJSON {
            return ByteBuffer(bytes: RemoteCommandStatus.json(for: outcome))
        }
        if outcome != .exited(code: 0) {
            return ByteBuffer(bytes: RemoteCommandStatus.plainText(for: outcome))
        }
        return nil
    }
}
