import ExecStreamCore
package import Logging
package import NIOCore
import NIOPosix

/// Port-forward over a SPDY/3.1 session, protocol `portforward.k8s.io` (PROTOCOLS.md §4), on
/// whatever carries the session's bytes: the upgraded TCP connection, or WebSocket binary
/// messages (the `SPDY/3.1+portforward.k8s.io` tunnel). Lives on one event loop.
///
/// Per forwarded connection the client opens an error stream (half-closed at once) and a data
/// stream with the same `port` and `requestid`; once both exist, the data stream is relayed to a
/// TCP connection to `localhost:port`. A failed connection writes a JSON error (closeConnection
/// false for EPIPE and ECONNRESET) to the error stream; the end of the TCP connection FINs both.
/// A pair left incomplete for the creation timeout gets an error on the stream it has.
final class SPDYPortForwardConnection {
    private struct Pair {
        var port: UInt16
        var errorStream: UInt32?
        var dataStream: UInt32?
        var connection: (any Channel)?
        var pending: [ByteBuffer] = []
        var timer: Scheduled<Void>?
        var finished = false
    }

    private let session: PortForwardSession
    private var sandboxID: String { self.session.sandboxID }
    private let eventLoop: any EventLoop
    private let logger: Logger
    private let creationTimeout: TimeAmount
    private let output: (ByteBuffer, _ flush: Bool) -> Void
    private let closeTransport: () -> Void
    private var decoder = NIOSingleStepByteToMessageProcessor(SPDYFrameDecoder())
    private let deflater = SPDYHeaderDeflater()
    private let inflater = SPDYHeaderInflater()
    private var pairs: [String: Pair] = [:]
    private var pairOfStream: [UInt32: String] = [:]
    private var closed = false

    package init(
        session: PortForwardSession,
        eventLoop: any EventLoop,
        logger: Logger,
        creationTimeout: TimeAmount,
        output: @escaping (ByteBuffer, _ flush: Bool) -> Void,
        closeTransport: @escaping () -> Void
    ) {
        self.session = session
        self.eventLoop = eventLoop
        self.logger = logger
        self.creationTimeout = creationTimeout
        self.output = output
        self.closeTransport = closeTransport
    }

    /// Bytes of the session from the client.
    func receive(_ bytes: ByteBuffer) {
        do {
            try self.decoder.process(buffer: bytes) { frame in
                try self.handle(frame)
            }
        } catch {
            self.logger.debug("SPDY port-forward protocol error", metadata: ["error": "\(error)"])
            self.write(.goAway(lastGoodStreamID: self.pairOfStream.keys.max() ?? 0, status: 1))
            self.close()
        }
    }

    /// The transport is gone: close every forwarded connection.
    func close() {
        guard !self.closed else { return }
        self.closed = true
        for pair in self.pairs.values {
            pair.timer?.cancel()
            pair.connection?.close(promise: nil)
        }
        self.pairs = [:]
        self.closeTransport()
    }

    private func handle(_ frame: SPDYFrame) throws {
        switch frame {
        case .synStream(let id, _, _, _, _, let block):
            let headers = try self.inflater.decompress(block)
            let value = { (name: String) in headers.first { $0.name == name }?.value }
            guard let type = value("streamtype"), type == "error" || type == "data",
                let portText = value("port"), let port = UInt16(portText), port > 0, self.pairOfStream[id] == nil
            else {
                self.write(.rstStream(streamID: id, status: SPDY.RstStatus.protocolError))
                return
            }
            // Old clients send no requestid: the error stream's id names the pair, the data stream's id - 2.
            let requestID = value("requestid") ?? String(type == "error" ? id : id &- 2)
            self.write(.synReply(streamID: id, fin: false, headerBlock: self.deflater.compress([])))
            self.pairOfStream[id] = requestID
            var pair = self.pairs[requestID] ?? Pair(port: port)
            if type == "error" { pair.errorStream = id } else { pair.dataStream = id }
            if pair.timer == nil {
                pair.timer = self.scheduleCreationTimeout(requestID)
            }
            self.pairs[requestID] = pair
            if pair.errorStream != nil && pair.dataStream != nil {
                self.pairs[requestID]?.timer?.cancel()
                self.connect(requestID)
            }
        case .data(let id, let fin, let payload):
            guard let requestID = self.pairOfStream[id] else {
                self.write(.rstStream(streamID: id, status: SPDY.RstStatus.invalidStream))
                return
            }
            guard let pair = self.pairs[requestID], pair.dataStream == id else { return }
            if payload.readableBytes > 0 {
                if let connection = pair.connection {
                    connection.writeAndFlush(payload, promise: nil)
                } else {
                    self.pairs[requestID]?.pending.append(payload)
                }
            }
            if fin {
                // The client is done sending: half-close towards the service.
                pair.connection?.close(mode: .output, promise: nil)
            }
        case .rstStream(let id, _):
            guard let requestID = self.pairOfStream[id] else { return }
            self.pairs[requestID]?.connection?.close(promise: nil)
        case .ping(let id):
            if id & 1 == 1 {
                self.write(.ping(id: id))
            }
        case .goAway:
            self.close()
        case .synReply(let id, _, let block), .headers(let id, _, let block):
            // Inflated even though unused: the connection's zlib stream must see every block.
            _ = try self.inflater.decompress(block)
            if self.pairOfStream[id] == nil {
                self.write(.rstStream(streamID: id, status: SPDY.RstStatus.invalidStream))
            }
        case .settings, .windowUpdate:
            break
        }
    }

    private func scheduleCreationTimeout(_ requestID: String) -> Scheduled<Void> {
        let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
        return self.eventLoop.scheduleTask(in: self.creationTimeout) {
            let connection = loopBound.value
            guard let pair = connection.pairs[requestID], pair.errorStream == nil || pair.dataStream == nil else { return }
            if let stream = pair.errorStream ?? pair.dataStream {
                connection.write(.data(streamID: stream, fin: true, payload: ByteBuffer(string: "timed out waiting for the other stream of request \(requestID)")))
            }
            connection.pairs[requestID] = nil
        }
    }

    private func connect(_ requestID: String) {
        guard let pair = self.pairs[requestID] else { return }
        let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
        ForwardedTCPConnection.connect(
            port: pair.port,
            on: self.eventLoop,
            allowHalfClosure: true,
            session: self.session,
            events: { event in loopBound.value.tcpEvent(requestID, event) },
            connected: { result in loopBound.value.connected(requestID, result) }
        )
    }

    private func connected(_ requestID: String, _ result: Result<any Channel, any Error>) {
        guard !self.closed, let pair = self.pairs[requestID] else {
            if case .success(let channel) = result { channel.close(promise: nil) }
            return
        }
        switch result {
        case .success(let connection):
            self.pairs[requestID]?.connection = connection
            for chunk in pair.pending {
                connection.write(chunk, promise: nil)
            }
            connection.flush()
            self.pairs[requestID]?.pending = []
        case .failure(let error):
            self.reportError(requestID, error)
            self.finish(requestID)
        }
    }

    private func reportError(_ requestID: String, _ error: any Error) {
        guard let pair = self.pairs[requestID], let stream = pair.errorStream else { return }
        let reset = (error as? IOError).map { $0.errnoCode == EPIPE || $0.errnoCode == ECONNRESET } ?? false
        let message = "error forwarding port \(pair.port) to pod \(self.sandboxID), uid : \(error)"
        var json = #"{"closeConnection":\#(!reset),"message":"#
        json += JSONWriter.quoted(message) + "}\n"
        self.write(.data(streamID: stream, fin: false, payload: ByteBuffer(string: json)))
    }

    /// What happened on request `requestID`'s TCP connection.
    fileprivate func tcpEvent(_ requestID: String, _ event: ForwardedTCPEvent) {
        switch event {
        case .read(let data, _):
            self.tcpRead(requestID, data)
        case .inputClosed, .ended:
            // The service finished its answer, or the connection closed: end the pair.
            self.tcpEnded(requestID)
        case .failed(let error):
            self.reportError(requestID, error)
        case .writable:
            // SPDY has no flow control towards the client: nothing waits for this.
            break
        }
    }

    /// The service's bytes for the client.
    private func tcpRead(_ requestID: String, _ data: ByteBuffer) {
        guard let stream = self.pairs[requestID]?.dataStream else { return }
        var header = ByteBuffer()
        SPDYFrameEncoder.writeDataHeader(streamID: stream, fin: false, payloadByteCount: data.readableBytes, into: &header)
        self.output(header, false)
        self.output(data, true)
    }

    private func tcpEnded(_ requestID: String) {
        self.finish(requestID)
    }

    private func finish(_ requestID: String) {
        guard let pair = self.pairs[requestID], !pair.finished else { return }
        self.pairs[requestID]?.finished = true
        for stream in [pair.dataStream, pair.errorStream].compactMap({ $0 }) {
            self.write(.data(streamID: stream, fin: true, payload: ByteBuffer()))
        }
        pair.connection?.close(promise: nil)
    }

    private func write(_ frame: SPDYFrame) {
        guard !self.closed else { return }
        var buffer = ByteBuffer()
        SPDYFrameEncoder.encode(frame, into: &buffer)
        self.output(buffer, true)
    }
}

/// A SPDY port-forward on whatever carries its bytes: the upgraded TCP connection, or a WebSocket
/// made a byte carrier by `WebSocketByteStreamHandler`.
package final class SPDYPortForwardHandler: ChannelInboundHandler {
    /// Counted while alive (see `LiveObjects`).
    private let live = LiveObjects.Token(.adapters)
    package typealias InboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private let session: PortForwardSession
    private let logger: Logger
    private let creationTimeout: TimeAmount
    private var connection: SPDYPortForwardConnection?

    package init(session: PortForwardSession, logger: Logger, creationTimeout: TimeAmount) {
        self.session = session
        self.logger = logger
        self.creationTimeout = creationTimeout
    }

    /// The connection's closures hold the context, which holds this handler: let go of the
    /// connection when the pipeline lets go of the handler.
    package func handlerRemoved(context: ChannelHandlerContext) {
        self.connection = nil
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        self.session.start()
        let channel = context.channel
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.connection = SPDYPortForwardConnection(
            session: self.session,
            eventLoop: context.eventLoop,
            logger: self.logger,
            creationTimeout: self.creationTimeout,
            output: { bytes, flush in
                let context = bound.value
                if flush {
                    context.writeAndFlush(NIOAny(bytes), promise: nil)
                } else {
                    context.write(NIOAny(bytes), promise: nil)
                }
            },
            closeTransport: { channel.close(promise: nil) }
        )
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.connection?.receive(self.unwrapInboundIn(data))
    }

    package func channelInactive(context: ChannelHandlerContext) {
        self.connection?.close()
        self.session.end()
        context.fireChannelInactive()
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
