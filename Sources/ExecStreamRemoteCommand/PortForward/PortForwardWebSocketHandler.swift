package import ExecStreamCore
package import Logging
package import NIOCore
import NIOPosix
package import NIOWebSocket

/// Port-forward over the WebSocket channel protocol (PROTOCOLS.md §4): port i (in the CRI
/// request's order) has data channel 2i and error channel 2i+1; each starts with the port as two
/// little-endian bytes; each port carries one TCP connection to `localhost:port` (the sandbox's
/// network namespace is the host's: neither isolation mode makes a network namespace). The
/// WebSocket closes with 1000 once every port's connection has ended.
///
/// Backpressure both ways: a TCP connection stops being read while the WebSocket is not
/// writable, and the WebSocket stops being read while the TCP connection of the port it is
/// writing to is not.
package final class PortForwardWebSocketHandler: ChannelInboundHandler {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.adapters)
    package typealias InboundIn = WebSocketFrame
    package typealias OutboundOut = WebSocketFrame

    private struct Port {
        let number: UInt16
        var connection: (any Channel)?
        /// Data the client sent before the connection was up.
        var pending: [ByteBuffer] = []
        var ended = false
    }

    private let session: PortForwardSession
    private let base64: Bool
    private let logger: Logger
    private var ports: [Port]
    private var context: ChannelHandlerContext?
    private var closing = false
    private var released = false

    package init(session: PortForwardSession, channelProtocol: KubernetesChannelProtocol, logger: Logger) {
        self.session = session
        self.base64 = channelProtocol.isBase64
        self.logger = logger
        self.ports = session.ports.map { Port(number: $0) }
    }

    /// The context refers to this handler and this handler to the context: let go of it when
    /// the pipeline does, or the connection (and all it holds) is never freed.
    package func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.session.start()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        for (index, port) in self.ports.enumerated() {
            let prefix = ByteBuffer(bytes: [UInt8(port.number & 0xFF), UInt8(port.number >> 8)])
            self.send(prefix, channel: 2 * index)
            self.send(prefix, channel: 2 * index + 1)
            ForwardedTCPConnection.connect(
                port: port.number,
                on: context.eventLoop,
                allowHalfClosure: false,
                session: self.session,
                events: { event in loopBound.value.tcpEvent(index, event) },
                connected: { result in loopBound.value.connected(index, result) }
            )
        }
        if self.ports.isEmpty {
            self.closeWebSocket(code: .normalClosure)
        }
    }

    package func channelInactive(context: ChannelHandlerContext) {
        self.closing = true
        for port in self.ports {
            port.connection?.close(promise: nil)
        }
        self.releaseSlot()
        context.fireChannelInactive()
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The client caught up: read the TCP connections again.
        let writable = context.channel.isWritable
        for port in self.ports {
            if let connection = port.connection {
                try? connection.syncOptions?.setOption(.autoRead, value: writable)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        switch frame.opcode {
        case .binary, .text:
            self.receive(frame.unmaskedData)
        case .ping:
            context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            self.closeWebSocket(code: .normalClosure)
        default:
            break
        }
    }

    private func receive(_ message: ByteBuffer) {
        var message = message
        guard let first = message.readInteger(as: UInt8.self) else { return }
        let channel: Int
        var payload: ByteBuffer
        if self.base64 {
            guard first >= UInt8(ascii: "0") else { return }
            channel = Int(first - UInt8(ascii: "0"))
            guard let decoded = try? Base64.decode(message.readableBytesView) else {
                self.closeWebSocket(code: .protocolError)
                return
            }
            payload = ByteBuffer(bytes: decoded)
        } else {
            channel = Int(first)
            payload = message
        }
        // Only data channels (even) carry client bytes; anything else is dropped, as upstream.
        guard channel % 2 == 0, channel / 2 < self.ports.count, payload.readableBytes > 0 else { return }
        let index = channel / 2
        guard !self.ports[index].ended else { return }
        guard let connection = self.ports[index].connection else {
            self.ports[index].pending.append(payload)
            return
        }
        connection.writeAndFlush(payload, promise: nil)
        if !connection.isWritable {
            // The local service is behind: stop reading the client until it catches up.
            try? self.context?.channel.syncOptions?.setOption(.autoRead, value: false)
        }
        payload.clear()
    }

    // MARK: The TCP side

    fileprivate func connected(_ index: Int, _ result: Result<any Channel, any Error>) {
        switch result {
        case .success(let connection):
            guard !self.closing else {
                connection.close(promise: nil)
                return
            }
            self.ports[index].connection = connection
            for chunk in self.ports[index].pending {
                connection.write(chunk, promise: nil)
            }
            connection.flush()
            self.ports[index].pending = []
        case .failure(let error):
            let port = self.ports[index].number
            self.logger.debug("port-forward connect failed", metadata: ["port": "\(port)", "error": "\(error)"])
            self.send(ByteBuffer(string: "error forwarding port \(port) to pod \(self.session.sandboxID): \(error)"), channel: 2 * index + 1)
            self.portEnded(index)
        }
    }

    /// What happened on port `index`'s TCP connection.
    fileprivate func tcpEvent(_ index: Int, _ event: ForwardedTCPEvent) {
        switch event {
        case .read(let data, let connection):
            self.tcpRead(index, data, connection: connection)
        case .writable:
            self.tcpWritable(index)
        case .ended:
            self.portEnded(index)
        case .inputClosed, .failed:
            // No half-closure here; a failure closes the connection, and `ended` follows.
            break
        }
    }

    private func tcpRead(_ index: Int, _ data: ByteBuffer, connection: any Channel) {
        self.send(data, channel: 2 * index)
        if let context = self.context, !context.channel.isWritable {
            try? connection.syncOptions?.setOption(.autoRead, value: false)
        }
    }

    private func tcpWritable(_ index: Int) {
        try? self.context?.channel.syncOptions?.setOption(.autoRead, value: true)
    }

    private func portEnded(_ index: Int) {
        guard !self.ports[index].ended else { return }
        self.ports[index].ended = true
        self.ports[index].connection = nil
        if self.ports.allSatisfy(\.ended) {
            self.closeWebSocket(code: .normalClosure)
        }
    }

    private func send(_ payload: ByteBuffer, channel: Int) {
        guard let context = self.context, !self.closing else { return }
        var message = context.channel.allocator.buffer(capacity: payload.readableBytes + 1)
        let opcode: NIOWebSocket.WebSocketOpcode
        if self.base64 {
            message.writeString(String(channel))
            message.writeBytes(Base64.encode(payload.readableBytesView))
            opcode = .text
        } else {
            message.writeInteger(UInt8(channel))
            message.writeImmutableBuffer(payload)
            opcode = .binary
        }
        context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: opcode, data: message)), promise: nil)
    }

    private func closeWebSocket(code: WebSocketErrorCode) {
        guard let context = self.context, !self.closing else { return }
        self.closing = true
        for port in self.ports {
            port.connection?.close(promise: nil)
        }
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        let channel = context.channel
        context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in channel.close(promise: nil) }
        self.releaseSlot()
    }

    private func releaseSlot() {
        guard !self.released else { return }
        self.released = true
        self.session.end()
    }
}
