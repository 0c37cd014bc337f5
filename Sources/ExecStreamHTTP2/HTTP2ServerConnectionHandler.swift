import CNghttp2
import ExecStreamCore
public import NIOCore

/// One HTTP/2 server connection: an nghttp2 server session owned by this handler on its event loop.
///
/// Bytes read are fed to `nghttp2_session_mem_recv`; nghttp2's callbacks only change state here
/// (streams opened, headers, data, closes). Whoever fed bytes, or queued a response, then flushes:
/// `nghttp2_session_mem_send` is called in a loop (never from inside a callback) and everything it
/// produces is written in order. DATA frames use `NGHTTP2_DATA_FLAG_NO_COPY`: the send-data
/// callback writes the 9-byte frame header and then slices of the application's own buffers, so
/// response bytes are never copied. Inbound DATA is sliced out of the read buffer, also without a
/// copy, and acknowledged to the peer only when the application consumes it.
///
/// Flushing stops while the channel is not writable (a client that stops reading): writers then
/// suspend at the per-stream watermark, and memory stays bounded.
public final class HTTP2ServerConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundIn = Never
    public typealias OutboundOut = ByteBuffer

    /// Called on the event loop for every request stream whose head arrived.
    public typealias StreamInitializer = @Sendable (HTTP2ServerStream) -> Void

    private static let keepalivePingData: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0x6B, 0x65, 0x65, 0x70, 0x61, 0x6C, 0x69, 0x76)  // "keepaliv"
    private static let shutdownPingData: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0x73, 0x68, 0x75, 0x74, 0x64, 0x6F, 0x77, 0x6E)  // "shutdown"

    /// Per-stream state, confined to the event loop.
    private final class StreamState {
        let id: Int32
        var method: String?
        var scheme: String?
        var authority: String?
        var path: String?
        var extendedConnectProtocol: String?
        var headers = HTTP2Headers()
        var headerListSize = 0
        var headerListTooLarge = false
        /// Set once the request head has been handed to the application.
        var inbound: AsyncThrowingStream<ByteBuffer, any Error>.Continuation?
        var inboundFinished = false
        /// Request bytes handed to the application and not yet consumed by it.
        var unconsumedByteCount = 0
        var responseHeadSent = false
        var responseFinished = false
        var trailers: HTTP2Headers?
        var outbound = CircularBuffer<ByteBuffer>()
        var outboundByteCount = 0
        var dataDeferred = false
        var suspendedWriters: [CheckedContinuation<Void, any Error>] = []
        /// A producer on the event loop waiting for the queue to drain.
        var writableCallback: (() -> Void)?
        var closePromise: EventLoopPromise<HTTP2StreamCloseReason>?

        /// The response has been finished and every byte of it handed to nghttp2: a reset now
        /// abandons nothing.
        var isResponseComplete: Bool { self.responseFinished && self.outbound.isEmpty }

        init(id: Int32) {
            self.id = id
        }
    }

    private let configuration: HTTP2Configuration
    private let streamInitializer: StreamInitializer
    private var session: OpaquePointer?
    private var context: ChannelHandlerContext?
    private var streams: [Int32: StreamState] = [:]
    private var lifecycle = ConnectionLifecycleStateMachine()
    /// Counts the peer's resets of streams whose response is not complete (rapid reset).
    private var resetLimit: StreamResetRateLimit

    /// The buffer being fed to nghttp2, and its base address, while `mem_recv` runs.
    private var receiving: (buffer: ByteBuffer, base: UnsafeRawPointer)?
    /// Output of the current flush, in order.
    private var output: [ByteBuffer] = []
    private var controlBytes: ByteBuffer
    private var isFlushing = false
    /// Streams whose response has ended while their request may still be open (see
    /// `stopSending`).
    private var stopSendingCandidates: [Int32] = []
    private var isReading = false
    private var closeAfterFlush = false
    /// DATA payload bytes serialised by the current send loop (see `HTTP2Configuration.maxDataBytesPerSendLoop`).
    private var sentDataBytes = 0
    private var continuationScheduled = false

    /// When the last bytes arrived, by the event loop's clock (virtual in tests).
    private var lastReadTime = NIODeadline.uptimeNanoseconds(0)
    private var keepaliveTimer: Scheduled<Void>?
    private var pingTimeoutTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    private var graceTimer: Scheduled<Void>?

    /// Told of the connection's opening and closing, and of GOAWAYs and resets each way.
    private let observer: any HTTP2ConnectionObserver
    private var observedOpen = false

    public init(
        configuration: HTTP2Configuration,
        observer: any HTTP2ConnectionObserver = NoHTTP2ConnectionObserver(),
        streamInitializer: @escaping StreamInitializer
    ) {
        self.configuration = configuration
        self.observer = observer
        self.streamInitializer = streamInitializer
        self.controlBytes = ByteBuffer()
        self.resetLimit = StreamResetRateLimit(burst: configuration.streamResetBurst, ratePerSecond: configuration.streamResetRatePerSecond)
    }

    deinit {
        if let session = self.session {
            nghttp2_session_del(session)
        }
    }

    // MARK: Channel events

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.controlBytes = context.channel.allocator.buffer(capacity: 1024)
        self.observedOpen = true
        self.observer.connectionOpened()
        self.startSession()
        if context.channel.isActive {
            self.startTimers(context: context)
        }
        self.flush()
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.startTimers(context: context)
        context.fireChannelActive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.tearDown(reason: .connectionClosed)
        self.context = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.tearDown(reason: .connectionClosed)
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        guard let session = self.session else { return }
        self.lastReadTime = context.eventLoop.now
        self.isReading = true
        let result = buffer.withUnsafeReadableBytes { bytes -> Int in
            guard let base = bytes.baseAddress else { return 0 }
            self.receiving = (buffer, base)
            defer { self.receiving = nil }
            return nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        }
        if result < 0 {
            // A fatal connection error (bad preface, flood, protocol violation). nghttp2 queues a
            // GOAWAY for some; for the others (a CONTINUATION flood) we queue one, so the peer
            // learns why, then send it and close.
            let flooded = [NGHTTP2_ERR_FLOODED.rawValue, NGHTTP2_ERR_TOO_MANY_CONTINUATIONS.rawValue].contains(Int32(result))
            nghttp2_session_terminate_session(session, flooded ? HTTP2ErrorCode.enhanceYourCalm : HTTP2ErrorCode.protocolError)
            self.closeAfterFlush = true
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        self.isReading = false
        self.flush()
        context.fireChannelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.flush()
        }
        context.fireChannelWritabilityChanged()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            self.run(self.lifecycle.shutdownRequested())
            self.flush()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: Application API (on the event loop)

    func sendResponseHead(streamID: Int32, status: Int, headers: HTTP2Headers, endStream: Bool) {
        guard let session = self.session, let stream = self.streams[streamID], !stream.responseHeadSent else { return }
        stream.responseHeadSent = true
        var fields = [(":status", String(status))]
        fields += headers.fields.map { ($0.name, $0.value) }
        let result: Int32
        if endStream {
            stream.responseFinished = true
            self.stopSendingCandidates.append(streamID)
            result = withNameValuePairs(fields) { nva, count in
                nghttp2_submit_response(session, streamID, nva, count, nil)
            }
        } else {
            var provider = nghttp2_data_provider()
            provider.read_callback = readDataCallback
            result = withNameValuePairs(fields) { nva, count in
                nghttp2_submit_response(session, streamID, nva, count, &provider)
            }
        }
        if result != 0 {
            self.reset(streamID: streamID, code: HTTP2ErrorCode.internalError)
        }
        self.flush()
    }

    func write(streamID: Int32, buffers: [ByteBuffer], continuation: CheckedContinuation<Void, any Error>) {
        guard let stream = self.streams[streamID] else {
            continuation.resume(throwing: HTTP2TransportError(code: .connectionClosed, message: "stream \(streamID) is closed"))
            return
        }
        guard stream.responseHeadSent, !stream.responseFinished else {
            continuation.resume(throwing: HTTP2TransportError(code: .invalidUse, message: "write outside of a response body"))
            return
        }
        for data in buffers where data.readableBytes > 0 {
            stream.outbound.append(data)
            stream.outboundByteCount += data.readableBytes
        }
        self.resumeData(stream)
        if stream.outboundByteCount > self.configuration.outboundHighWatermark {
            stream.suspendedWriters.append(continuation)
        } else {
            continuation.resume()
        }
        self.flush()
    }

    func writeOnLoop(streamID: Int32, buffers: [ByteBuffer]) -> HTTP2WriteResult {
        guard let stream = self.streams[streamID], stream.responseHeadSent, !stream.responseFinished else { return .closed }
        // Queue them all before flushing: a frame header and its payload share one DATA frame.
        var queued = false
        for data in buffers where data.readableBytes > 0 {
            stream.outbound.append(data)
            stream.outboundByteCount += data.readableBytes
            queued = true
        }
        if queued {
            self.resumeData(stream)
            self.flush()
        }
        return stream.outboundByteCount <= self.configuration.outboundHighWatermark ? .writable : .aboveHighWatermark
    }

    func whenWritable(streamID: Int32, callback: @escaping () -> Void) {
        guard let stream = self.streams[streamID] else {
            callback()
            return
        }
        if stream.outboundByteCount <= self.configuration.outboundLowWatermark {
            callback()
        } else {
            stream.writableCallback = callback
        }
    }

    func finish(streamID: Int32, trailers: HTTP2Headers?) {
        guard let stream = self.streams[streamID], !stream.responseFinished else { return }
        guard stream.responseHeadSent else {
            // No head was sent: the trailers are the whole response (gRPC trailers-only).
            var headers = trailers ?? HTTP2Headers()
            let status = headers[first: ":status"].flatMap { Int($0) } ?? 200
            headers = HTTP2Headers(headers.fields.filter { $0.name != ":status" })
            self.sendResponseHead(streamID: streamID, status: status, headers: headers, endStream: true)
            return
        }
        stream.responseFinished = true
        stream.trailers = trailers
        self.stopSendingCandidates.append(streamID)
        self.resumeData(stream)
        self.flush()
    }

    func reset(streamID: Int32, code: UInt32) {
        guard let session = self.session, self.streams[streamID] != nil else { return }
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, code)
        self.flush()
    }

    func consumed(streamID: Int32, byteCount: Int) {
        // A closed stream gave its unconsumed bytes back to the connection window when it closed.
        guard let session = self.session, byteCount > 0, let stream = self.streams[streamID] else { return }
        stream.unconsumedByteCount -= byteCount
        nghttp2_session_consume(session, streamID, byteCount)
        self.flush()
    }

    private func resumeData(_ stream: StreamState) {
        guard stream.dataDeferred, let session = self.session else { return }
        stream.dataDeferred = false
        nghttp2_session_resume_data(session, stream.id)
    }

    // MARK: Session setup and flushing

    private func startSession() {
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeadersCallback)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeaderCallback)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameReceivedCallback)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, onFrameSentCallback)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunkCallback)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamCloseCallback)
        nghttp2_session_callbacks_set_send_data_callback(callbacks, sendDataCallback)
        nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, onFrameNotSentCallback)

        var option: OpaquePointer?
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)
        // nghttp2's own limiter counts every RST_STREAM, including gRPC clients' harmless resets of
        // calls we have already ended; ours (`resetLimit`) counts only resets that abandon work.
        nghttp2_option_set_stream_reset_rate_limit(option, UInt64.max, 0)
        nghttp2_option_set_max_continuations(option, self.configuration.maxContinuations)
        if !self.configuration.validatesHTTPMessaging {
            nghttp2_option_set_no_http_messaging(option, 1)
        }

        var session: OpaquePointer?
        let userData = Unmanaged.passUnretained(self).toOpaque()
        guard nghttp2_session_server_new2(&session, callbacks, userData, option) == 0, let session else {
            self.context?.close(promise: nil)
            return
        }
        self.session = session

        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: UInt32(self.configuration.maxConcurrentStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(self.configuration.streamWindowSize)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(self.configuration.maxHeaderListSize)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL.rawValue), value: 1),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(self.configuration.connectionWindowSize))
    }

    /// Serialises everything nghttp2 has to send and writes it, unless the channel is not writable.
    private func flush() {
        // Never from inside an nghttp2 callback; while reading, channelReadComplete flushes once.
        guard !self.isFlushing, self.receiving == nil, !self.isReading, let session = self.session, let context = self.context else { return }
        self.isFlushing = true
        defer { self.isFlushing = false }
        self.sentDataBytes = 0
        if context.channel.isWritable || self.closeAfterFlush {
            repeat {
                while true {
                    var data: UnsafePointer<UInt8>?
                    let count = nghttp2_session_mem_send(session, &data)
                    if count < 0 {
                        self.closeAfterFlush = true
                        break
                    }
                    guard count > 0, let data else { break }
                    self.controlBytes.writeBytes(UnsafeRawBufferPointer(start: data, count: count))
                }
            } while self.stopSending(session)
            self.moveControlBytesToOutput()
            if !self.output.isEmpty {
                for buffer in self.output {
                    context.write(self.wrapOutboundOut(buffer), promise: nil)
                }
                self.output.removeAll(keepingCapacity: true)
                context.flush()
            }
            if self.sentDataBytes >= self.configuration.maxDataBytesPerSendLoop && !self.continuationScheduled {
                // Paused at the budget: continue on the next loop iteration, after the loop has
                // read whatever arrived meanwhile (the WINDOW_UPDATEs that keep the pipe full).
                self.continuationScheduled = true
                context.eventLoop.assumeIsolated().execute {
                    self.continuationScheduled = false
                    self.flush()
                }
            }
        }
        if self.closeAfterFlush || self.lifecycle.isClosed
            || (nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0)
        {
            context.close(promise: nil)
        }
    }

    /// A response that ended while its request is still open (a gRPC status sent before the
    /// request body was read, a refusal, an exec that ended while its client was still sending
    /// stdin): once its END_STREAM is out, tell the client to stop sending with RST_STREAM
    /// NO_ERROR, as RFC 9113 §8.1 allows and grpc-go does. A client still uploading may otherwise
    /// wait for its upload before it reads the answer it has (curl does). Checked after each send
    /// loop, not per frame: the candidates are only the streams whose response just ended.
    /// Returns whether a reset was queued (to be sent by another loop).
    private func stopSending(_ session: OpaquePointer) -> Bool {
        guard !self.stopSendingCandidates.isEmpty else { return false }
        var queued = false
        self.stopSendingCandidates.removeAll { id in
            guard self.streams[id] != nil else { return true }
            guard nghttp2_session_get_stream_local_close(session, id) == 1 else { return false }  // not out yet
            if nghttp2_session_get_stream_remote_close(session, id) == 0 {
                nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, HTTP2ErrorCode.noError)
                queued = true
            }
            return true
        }
        return queued
    }

    private func moveControlBytesToOutput() {
        guard self.controlBytes.readableBytes > 0 else { return }
        self.output.append(self.controlBytes)
        self.controlBytes = self.context?.channel.allocator.buffer(capacity: 1024) ?? ByteBuffer()
    }

    private func tearDown(reason: HTTP2StreamCloseReason) {
        self.lifecycle.connectionClosed()
        if self.observedOpen {
            self.observedOpen = false
            self.observer.connectionClosed()
        }
        for timer in [self.keepaliveTimer, self.pingTimeoutTimer, self.idleTimer, self.graceTimer] {
            timer?.cancel()
        }
        let streams = self.streams
        self.streams.removeAll()
        for stream in streams.values {
            self.close(stream, reason: reason)
        }
    }

    private func close(_ stream: StreamState, reason: HTTP2StreamCloseReason) {
        let error: HTTP2TransportError
        switch reason {
        case .finished:
            error = HTTP2TransportError(code: .connectionClosed, message: "stream \(stream.id) closed")
        case .reset(let code):
            error = HTTP2TransportError(code: .streamReset, message: "stream \(stream.id) was reset", http2ErrorCode: code)
        case .connectionClosed:
            error = HTTP2TransportError(code: .connectionClosed, message: "the connection closed")
        }
        if !stream.inboundFinished {
            stream.inboundFinished = true
            if case .finished = reason {
                stream.inbound?.finish()
            } else {
                stream.inbound?.finish(throwing: error)
            }
        }
        let writers = stream.suspendedWriters
        stream.suspendedWriters.removeAll()
        for writer in writers {
            writer.resume(throwing: error)
        }
        stream.outbound.removeAll()
        stream.outboundByteCount = 0
        if let callback = stream.writableCallback {
            stream.writableCallback = nil
            callback()
        }
        if stream.unconsumedByteCount > 0, let session = self.session {
            // The application will not consume these any more: reopen the connection window.
            nghttp2_session_consume_connection(session, stream.unconsumedByteCount)
            stream.unconsumedByteCount = 0
        }
        stream.closePromise?.succeed(reason)
        stream.closePromise = nil
    }

    // MARK: Timers and lifecycle

    private func startTimers(context: ChannelHandlerContext) {
        guard self.keepaliveTimer == nil else { return }
        self.lastReadTime = context.eventLoop.now
        self.scheduleKeepalive(after: self.configuration.keepaliveInterval)
        self.run(.armIdleTimer)
    }

    private func scheduleKeepalive(after delay: TimeAmount) {
        guard let context = self.context else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.keepaliveTimer = context.eventLoop.scheduleTask(in: delay) {
            loopBound.value.keepaliveTimerFired()
        }
    }

    private func keepaliveTimerFired() {
        guard let context = self.context else { return }
        let quietFor = context.eventLoop.now - self.lastReadTime
        if quietFor < self.configuration.keepaliveInterval {
            self.scheduleKeepalive(after: self.configuration.keepaliveInterval - quietFor)
            return
        }
        self.run(self.lifecycle.keepaliveTimerFired())
        self.scheduleKeepalive(after: self.configuration.keepaliveInterval)
        self.flush()
    }

    /// Carries out a lifecycle action.
    private func run(_ action: ConnectionLifecycleAction) {
        guard let context = self.context, let session = self.session else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        switch action {
        case .none:
            break
        case .sendKeepalivePing:
            var data = Self.keepalivePingData
            _ = withUnsafeBytes(of: &data) { nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), $0.baseAddress?.assumingMemoryBound(to: UInt8.self)) }
            self.pingTimeoutTimer = context.eventLoop.scheduleTask(in: self.configuration.keepaliveTimeout) {
                let handler = loopBound.value
                handler.run(handler.lifecycle.pingTimeoutFired())
            }
        case .cancelPingTimeout:
            self.pingTimeoutTimer?.cancel()
            self.pingTimeoutTimer = nil
        case .armIdleTimer:
            self.idleTimer?.cancel()
            self.idleTimer = context.eventLoop.scheduleTask(in: self.configuration.idleTimeout) {
                let handler = loopBound.value
                handler.run(handler.lifecycle.idleTimerFired())
                handler.flush()
            }
        case .cancelIdleTimer:
            self.idleTimer?.cancel()
            self.idleTimer = nil
        case .sendGoAwayNotice:
            nghttp2_submit_shutdown_notice(session)
            var data = Self.shutdownPingData
            _ = withUnsafeBytes(of: &data) { nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), $0.baseAddress?.assumingMemoryBound(to: UInt8.self)) }
            self.graceTimer = context.eventLoop.scheduleTask(in: self.configuration.gracefulShutdownTimeout) {
                let handler = loopBound.value
                handler.run(handler.lifecycle.graceTimerFired())
            }
        case .sendFinalGoAway:
            nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session), HTTP2ErrorCode.noError, nil, 0)
        case .sendFinalGoAwayAndClose:
            nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session), HTTP2ErrorCode.noError, nil, 0)
            self.closeAfterFlush = true
        case .close(.drained):
            self.closeAfterFlush = true
        case .close:
            // Keepalive timeout or grace period expired: open streams are abandoned.
            self.closeAfterFlush = true
            self.flush()
        }
    }

    // MARK: nghttp2 callbacks (state changes only; no sending from here)

    fileprivate func onBeginHeaders(streamID: Int32, category: nghttp2_headers_category) -> Int32 {
        guard category == NGHTTP2_HCAT_REQUEST else { return 0 }
        self.streams[streamID] = StreamState(id: streamID)
        self.run(self.lifecycle.streamOpened())
        return 0
    }

    fileprivate func onHeader(streamID: Int32, name: String, value: String) -> Int32 {
        guard let stream = self.streams[streamID], !stream.headerListTooLarge else { return 0 }
        stream.headerListSize += name.utf8.count + value.utf8.count + 32
        if stream.headerListSize > self.configuration.maxHeaderListSize {
            stream.headerListTooLarge = true
            return 0
        }
        guard stream.inbound == nil else { return 0 }  // request trailers are not exposed
        guard let pseudoHeader = PseudoHeader(rawValue: name) else {
            stream.headers.add(name: name, value: value)
            return 0
        }
        switch pseudoHeader {
        case .method: stream.method = value
        case .scheme: stream.scheme = value
        case .authority: stream.authority = value
        case .path: stream.path = value
        case .protocol: stream.extendedConnectProtocol = value
        }
        return 0
    }

    fileprivate func onFrameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let header = frame.pointee.hd
        self.observe(frame, sent: false)
        let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        guard let kind = InboundFrame(header) else { return 0 }
        switch kind {
        case .headers:
            guard let stream = self.streams[header.stream_id] else { return 0 }
            if stream.inbound == nil {
                self.requestHeadReceived(stream)
            }
            if endStream {
                self.finishInbound(stream)
            }
        case .data:
            if endStream, let stream = self.streams[header.stream_id] {
                self.finishInbound(stream)
            }
        case .resetStream:
            // nghttp2 calls this before it closes the stream: we still know how far it got.
            guard let stream = self.streams[header.stream_id], !stream.isResponseComplete else { return 0 }
            if !self.resetLimit.abandonedStreamReset(now: .now()), let session = self.session {
                nghttp2_session_terminate_session(session, HTTP2ErrorCode.enhanceYourCalm)
                self.closeAfterFlush = true
            }
        case .pingAck:
            let received = withUnsafeBytes(of: frame.pointee.ping.opaque_data) { $0.loadUnaligned(as: UInt64.self) }
            if received == Self.pingPayload(Self.keepalivePingData) {
                self.run(self.lifecycle.keepalivePingAcked())
            } else if received == Self.pingPayload(Self.shutdownPingData) {
                self.run(self.lifecycle.shutdownPingAcked())
            }
        }
        return 0
    }

    private static func pingPayload(_ data: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)) -> UInt64 {
        withUnsafeBytes(of: data) { $0.loadUnaligned(as: UInt64.self) }
    }

    /// The request pseudo-header fields the handler records.
    private enum PseudoHeader: String {
        /// `:method`
        case method = ":method"
        /// `:scheme`
        case scheme = ":scheme"
        /// `:authority`
        case authority = ":authority"
        /// `:path`
        case path = ":path"
        /// `:protocol` (RFC 8441)
        case `protocol` = ":protocol"
    }

    /// The received frames the handler acts on; nil for every other frame.
    /// A frame nghttp2 sent (whoever queued it: we, or nghttp2 on a protocol error).
    fileprivate func onFrameSent(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        self.observe(frame, sent: true)
        return 0
    }

    /// Tells the observer of a GOAWAY or RST_STREAM.
    private func observe(_ frame: UnsafePointer<nghttp2_frame>, sent: Bool) {
        let type = UInt32(frame.pointee.hd.type)
        if type == NGHTTP2_GOAWAY.rawValue {
            self.observer.goAway(code: frame.pointee.goaway.error_code, sent: sent)
        } else if type == NGHTTP2_RST_STREAM.rawValue {
            self.observer.streamReset(code: frame.pointee.rst_stream.error_code, sent: sent)
        }
    }

    private enum InboundFrame {
        /// HEADERS (a request head, or trailers).
        case headers
        /// DATA (only END_STREAM matters here; the bytes arrive through the chunk callback).
        case data
        /// RST_STREAM from the peer.
        case resetStream
        /// The acknowledgement of one of our PINGs.
        case pingAck

        init?(_ header: nghttp2_frame_hd) {
            let type = UInt32(header.type)
            if type == NGHTTP2_HEADERS.rawValue {
                self = .headers
            } else if type == NGHTTP2_DATA.rawValue {
                self = .data
            } else if type == NGHTTP2_RST_STREAM.rawValue {
                self = .resetStream
            } else if type == NGHTTP2_PING.rawValue && header.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0 {
                self = .pingAck
            } else {
                return nil
            }
        }
    }

    private func requestHeadReceived(_ stream: StreamState) {
        guard let session = self.session, let context = self.context else { return }
        if stream.headerListTooLarge {
            stream.inboundFinished = true
            stream.responseHeadSent = true
            stream.responseFinished = true
            withNameValuePairs([(":status", "431")]) { nva, count in
                nghttp2_submit_response(session, stream.id, nva, count, nil)
            }
            return
        }
        let head = HTTP2RequestHead(
            method: stream.method ?? "",
            scheme: stream.scheme,
            authority: stream.authority,
            path: stream.path,
            extendedConnectProtocol: stream.extendedConnectProtocol,
            headers: stream.headers
        )
        let (chunks, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
        stream.inbound = continuation
        let closePromise = context.eventLoop.makePromise(of: HTTP2StreamCloseReason.self)
        stream.closePromise = closePromise
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let streamID = stream.id
        let body = HTTP2RequestBody(chunks: chunks) { byteCount in
            eventLoop.execute { loopBound.value.consumed(streamID: streamID, byteCount: byteCount) }
        }
        let serverStream = HTTP2ServerStream(
            id: stream.id,
            head: head,
            remoteAddress: context.channel.remoteAddress,
            localAddress: context.channel.localAddress,
            requestBody: body,
            closeFuture: closePromise.futureResult,
            connection: loopBound
        )
        self.streamInitializer(serverStream)
    }

    private func finishInbound(_ stream: StreamState) {
        guard !stream.inboundFinished else { return }
        stream.inboundFinished = true
        stream.inbound?.finish()
    }

    fileprivate func onDataChunk(streamID: Int32, data: UnsafePointer<UInt8>, length: Int) -> Int32 {
        guard let session = self.session else { return 0 }
        guard let stream = self.streams[streamID], let inbound = stream.inbound, !stream.inboundFinished else {
            // Nobody will consume these bytes: give the window back at once.
            nghttp2_session_consume(session, streamID, length)
            return 0
        }
        let chunk: ByteBuffer
        if let receiving = self.receiving, UnsafeRawPointer(data) >= receiving.base,
            UnsafeRawPointer(data) + length <= receiving.base + receiving.buffer.readableBytes
        {
            let offset = UnsafeRawPointer(data) - receiving.base
            chunk = receiving.buffer.getSlice(at: receiving.buffer.readerIndex + offset, length: length)!
        } else {
            chunk = ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: length))
        }
        stream.unconsumedByteCount += length
        inbound.yield(chunk)
        return 0
    }

    fileprivate func onStreamClose(streamID: Int32, errorCode: UInt32) -> Int32 {
        guard let stream = self.streams.removeValue(forKey: streamID) else { return 0 }
        // A RST_STREAM with NO_ERROR before our response has gone out is still the peer
        // abandoning the stream: only a stream whose response was wholly sent is finished.
        let finished = errorCode == HTTP2ErrorCode.noError && stream.isResponseComplete
        self.close(stream, reason: finished ? .finished : .reset(errorCode))
        self.run(self.lifecycle.streamClosed())
        return 0
    }

    /// nghttp2 could not serialise a frame. For a response head or trailers (a header block over
    /// nghttp2's 64 KiB send limit, say) it drops the frame and leaves the stream open, so the
    /// peer would wait for an answer that never comes: reset the stream at once instead.
    fileprivate func onFrameNotSent(_ frame: UnsafePointer<nghttp2_frame>, errorCode: Int32) -> Int32 {
        let header = frame.pointee.hd
        guard UInt32(header.type) == NGHTTP2_HEADERS.rawValue, let session = self.session, self.streams[header.stream_id] != nil else {
            return 0
        }
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), header.stream_id, HTTP2ErrorCode.internalError)
        return 0
    }

    /// nghttp2 asks how much of `streamID`'s queued body to send (at most `maxLength`).
    fileprivate func readData(streamID: Int32, maxLength: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = self.streams[streamID], let session = self.session else {
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        let length = min(maxLength, stream.outboundByteCount)
        if length > 0 {
            flags.pointee |= NGHTTP2_DATA_FLAG_NO_COPY.rawValue
        }
        if length == stream.outboundByteCount && stream.responseFinished {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if let trailers = stream.trailers, !trailers.fields.isEmpty {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                withNameValuePairs(trailers.fields.map { ($0.name, $0.value) }) { nva, count in
                    nghttp2_submit_trailer(session, streamID, nva, count)
                }
            }
            return length
        }
        if length == 0 {
            stream.dataDeferred = true
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        return length
    }

    /// nghttp2 sends a DATA frame of `length` bytes from `streamID`'s queue: header, then slices.
    fileprivate func sendData(streamID: Int32, frameHeader: UnsafePointer<UInt8>, length: Int) -> Int32 {
        guard let stream = self.streams[streamID] else { return Int32(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
        self.controlBytes.writeBytes(UnsafeRawBufferPointer(start: frameHeader, count: 9))
        self.moveControlBytesToOutput()
        var remaining = length
        while remaining > 0, var chunk = stream.outbound.first {
            if chunk.readableBytes <= remaining {
                remaining -= chunk.readableBytes
                self.output.append(stream.outbound.removeFirst())
            } else {
                self.output.append(chunk.readSlice(length: remaining)!)
                stream.outbound[stream.outbound.startIndex] = chunk
                remaining = 0
            }
        }
        stream.outboundByteCount -= length
        self.sentDataBytes += length
        if stream.outboundByteCount <= self.configuration.outboundLowWatermark {
            if !stream.suspendedWriters.isEmpty {
                let writers = stream.suspendedWriters
                stream.suspendedWriters.removeAll()
                for writer in writers {
                    writer.resume()
                }
            }
            if let callback = stream.writableCallback {
                // Not from inside nghttp2's send loop: the producer will write and flush again.
                stream.writableCallback = nil
                self.context?.eventLoop.assumeIsolated().execute(callback)
            }
        }
        return self.sentDataBytes >= self.configuration.maxDataBytesPerSendLoop ? Int32(NGHTTP2_ERR_PAUSE.rawValue) : 0
    }
}

@available(*, unavailable)
extension HTTP2ServerConnectionHandler: Sendable {}

// MARK: - C callbacks: recover the handler from user data and forward.

private func handler(_ userData: UnsafeMutableRawPointer?) -> HTTP2ServerConnectionHandler {
    Unmanaged<HTTP2ServerConnectionHandler>.fromOpaque(userData!).takeUnretainedValue()
}

private let onBeginHeadersCallback: nghttp2_on_begin_headers_callback = { _, frame, userData in
    guard let frame else { return 0 }
    return handler(userData).onBeginHeaders(streamID: frame.pointee.hd.stream_id, category: frame.pointee.headers.cat)
}

private let onHeaderCallback: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    guard let frame, let name, let value else { return 0 }
    return handler(userData).onHeader(
        streamID: frame.pointee.hd.stream_id,
        name: String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self),
        value: String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self)
    )
}

private let onFrameReceivedCallback: nghttp2_on_frame_recv_callback = { _, frame, userData in
    guard let frame else { return 0 }
    return handler(userData).onFrameReceived(frame)
}

private let onFrameSentCallback: nghttp2_on_frame_send_callback = { _, frame, userData in
    guard let frame else { return 0 }
    return handler(userData).onFrameSent(frame)
}

private let onDataChunkCallback: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, userData in
    guard let data else { return 0 }
    return handler(userData).onDataChunk(streamID: streamID, data: data, length: length)
}

private let onStreamCloseCallback: nghttp2_on_stream_close_callback = { _, streamID, errorCode, userData in
    handler(userData).onStreamClose(streamID: streamID, errorCode: errorCode)
}

private let onFrameNotSentCallback: nghttp2_on_frame_not_send_callback = { _, frame, errorCode, userData in
    guard let frame else { return 0 }
    return handler(userData).onFrameNotSent(frame, errorCode: errorCode)
}

private let readDataCallback: nghttp2_data_source_read_callback = { _, streamID, _, length, flags, _, userData in
    guard let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return handler(userData).readData(streamID: streamID, maxLength: length, flags: flags)
}

private let sendDataCallback: nghttp2_send_data_callback = { _, frame, frameHeader, length, _, userData in
    guard let frame, let frameHeader else { return Int32(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return handler(userData).sendData(streamID: frame.pointee.hd.stream_id, frameHeader: frameHeader, length: length)
}

/// Calls `body` with header fields as `nghttp2_nv` values that nghttp2 copies.
@discardableResult
func withNameValuePairs(_ fields: [(String, String)], _ body: (UnsafePointer<nghttp2_nv>, Int) -> Int32) -> Int32 {
    var storage: [UInt8] = []
    var ranges: [(name: Range<Int>, value: Range<Int>)] = []
    for (name, value) in fields {
        let nameStart = storage.count
        storage += name.utf8
        let valueStart = storage.count
        storage += value.utf8
        ranges.append((nameStart..<valueStart, valueStart..<storage.count))
    }
    guard !fields.isEmpty else {
        var none = nghttp2_nv()
        return body(&none, 0)
    }
    return storage.withUnsafeMutableBufferPointer { bytes in
        let base = bytes.baseAddress!
        var pairs = ranges.map { range in
            nghttp2_nv(
                name: base + range.name.lowerBound,
                value: base + range.value.lowerBound,
                namelen: range.name.count,
                valuelen: range.value.count,
                flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)
            )
        }
        return pairs.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    }
}
