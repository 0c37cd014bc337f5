import NIOCore
import NIOPosix

/// What happens on the TCP connection of one forwarded port (to `127.0.0.1:port`: the sandbox's
/// network namespace is the host's), for whichever port-forward protocol relays it.
enum ForwardedTCPEvent {
    /// The service sent bytes for the client.
    case read(ByteBuffer, connection: any Channel)
    /// The connection can take more bytes again.
    case writable
    /// The service finished its answer (it half-closed; only with half-closure allowed).
    case inputClosed
    /// The connection closed.
    case ended
    /// The connection failed; it is being closed, and `ended` follows.
    case failed(any Error)
}

/// Opens the TCP connection of a forwarded port, once for every port-forward protocol: the
/// connection's events go to `events` and its outcome to `connected`, both on `eventLoop` (the
/// event loop of the client's connection, so relaying never hops). The bytes each way are counted
/// here for the `session`, whatever the protocol.
enum ForwardedTCPConnection {
    static func connect(
        port: UInt16,
        on eventLoop: any EventLoop,
        allowHalfClosure: Bool,
        session: PortForwardSession,
        events: @escaping @Sendable (ForwardedTCPEvent) -> Void,
        connected: @escaping @Sendable (Result<any Channel, any Error>) -> Void
    ) {
        ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.allowRemoteHalfClosure, value: allowHalfClosure)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Relay(session: session, events: events))
                }
            }
            .connect(host: "127.0.0.1", port: Int(port))
            .whenComplete(connected)
    }

    /// Turns the connection's pipeline events into `ForwardedTCPEvent`s.
    private final class Relay: ChannelDuplexHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundIn = ByteBuffer

        private let session: PortForwardSession
        private let events: (ForwardedTCPEvent) -> Void

        init(session: PortForwardSession, events: @escaping (ForwardedTCPEvent) -> Void) {
            self.session = session
            self.events = events
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = self.unwrapInboundIn(data)
            self.session.forwarded(bytes.readableBytes, toService: false)
            self.events(.read(bytes, connection: context.channel))
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            self.session.forwarded(self.unwrapOutboundIn(data).readableBytes, toService: true)
            context.write(data, promise: promise)
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            if context.channel.isWritable {
                self.events(.writable)
            }
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? ChannelEvent, case .inputClosed = event {
                self.events(.inputClosed)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.events(.ended)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            self.events(.failed(error))
            context.close(promise: nil)
        }
    }
}
