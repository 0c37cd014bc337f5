import NIOCore
import NIOSSL
import NIOTLS

/// Counts how a connection's TLS handshake ended, once: completed, or failed (an error, or the
/// peer gone before it completed). Sits right after `NIOSSLServerHandler` and leaves the pipeline
/// once the handshake has completed, so it costs nothing afterwards.
final class TLSHandshakeObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let metrics: ServerMetrics
    private let plane: String
    private var counted = false

    init(metrics: ServerMetrics, control: Bool) {
        self.metrics = metrics
        self.plane = control ? "control" : "data"
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            self.count(succeeded: true)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.count(succeeded: false)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.count(succeeded: false)
        context.fireChannelInactive()
    }

    private func count(succeeded: Bool) {
        guard !self.counted else { return }
        self.counted = true
        self.metrics.tlsHandshake(succeeded: succeeded, plane: self.plane)
    }
}
