public import NIOCore
import Synchronization

/// One HTTP/2 request stream as a SwiftNIO `Channel` of bytes, so that a protocol written as a
/// channel pipeline (WebSocket on NIOWebSocket's codec, RFC 8441) runs on an HTTP/2 stream exactly
/// as it runs on an upgraded HTTP/1.1 connection: the stream is then just another byte carrier.
///
/// ```
///  request DATA ──▶ requestBody ──(read demand)──▶ pipeline: channelRead(ByteBuffer)
///  pipeline: write + flush (ByteBuffer) ──▶ writeOnEventLoop ──▶ response DATA
///  close(.output) ──▶ END_STREAM          close(.all) ──▶ END_STREAM (if not sent), inactive
///  END_STREAM from the peer ──▶ close (like EOF on a socket)
///  RST_STREAM / connection lost ──▶ inactive at once
/// ```
///
/// Flow control is HTTP/2's own, both ways: request bytes are taken from the stream (and so
/// acknowledged with WINDOW_UPDATE) only when the pipeline reads (`autoRead`, or `read()`), and
/// the channel is not writable while the stream's outbound queue is above its high watermark.
/// Write promises complete once the bytes are queued on the stream, in order; a close that
/// follows them ends the stream after them. Everything but `isActive` and `isWritable` is
/// confined to the stream's event loop.
public final class HTTP2StreamChannel: Channel, ChannelCore, @unchecked Sendable {
    /// Where the channel is in its life.
    private enum State {
        /// Serving the stream (from the start: handlers are added to an active channel).
        case active
        /// Closed: inactive, handlers removed.
        case closed
    }

    private let stream: HTTP2ServerStream
    private let closePromise: EventLoopPromise<Void>
    private var _pipeline: ChannelPipeline!
    private var state = State.active
    private let active = Atomic(true)
    private let writable = Atomic(true)
    /// END_STREAM has been asked for (`close(.output)` or `close(.all)`).
    private var outputClosed = false
    /// The stream has closed (reset, lost, or both sides ended): nothing more goes to it.
    private var streamClosed = false
    private var waitingForWritable = false
    private var autoRead = true
    private var pendingWrites: [(buffer: ByteBuffer, promise: EventLoopPromise<Void>?)] = []
    private let demand = ReadDemand()
    private var reader: Task<Void, Never>?

    public let allocator = ByteBufferAllocator()
    public var closeFuture: EventLoopFuture<Void> { self.closePromise.futureResult }
    public var pipeline: ChannelPipeline { self._pipeline }
    public var localAddress: SocketAddress? { self.stream.localAddress }
    public var remoteAddress: SocketAddress? { self.stream.remoteAddress }
    public var parent: (any Channel)? { nil }
    public var eventLoop: any EventLoop { self.stream.eventLoop }
    public var isActive: Bool { self.active.load(ordering: .acquiring) }
    public var isWritable: Bool { self.writable.load(ordering: .acquiring) }
    public var _channelCore: any ChannelCore { self }
    public var syncOptions: (any NIOSynchronousChannelOptions)? { SynchronousOptions(channel: self) }

    private init(stream: HTTP2ServerStream) {
        self.stream = stream
        self.closePromise = stream.eventLoop.makePromise()
        self._pipeline = ChannelPipeline(channel: self)
    }

    /// Serves `stream` (its response head already sent) as a channel: it is active at once, and
    /// `initialize` adds the handlers, as handlers are added to an HTTP/1.1 connection after its
    /// upgrade (they see no `channelActive`); then reading starts. On the stream's event loop.
    /// If `initialize` throws, the stream is reset and the error returned.
    @discardableResult
    public static func serve(
        _ stream: HTTP2ServerStream,
        initialize: (any Channel) throws -> Void
    ) -> Result<HTTP2StreamChannel, any Error> {
        stream.eventLoop.preconditionInEventLoop()
        let channel = HTTP2StreamChannel(stream: stream)
        do {
            try initialize(channel)
        } catch {
            channel.streamClosed = true
            stream.reset(code: HTTP2ErrorCode.internalError)
            channel.close0(error: error, mode: .all, promise: nil)
            return .failure(error)
        }
        channel.startReading()
        return .success(channel)
    }

    private func startReading() {
        let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.stream.closeFuture.whenSuccess { _ in
            let channel = loopBound.value
            channel.streamClosed = true
            channel.close0(error: ChannelError.eof, mode: .all, promise: nil)
        }
        self.reader = Task { [demand, requestBody = self.stream.requestBody, eventLoop = self.eventLoop] in
            var chunks = requestBody.makeAsyncIterator()
            while await demand.next() {
                do {
                    guard let chunk = try await chunks.next() else {
                        eventLoop.execute { loopBound.value.inputEnded() }
                        return
                    }
                    eventLoop.execute { loopBound.value.received(chunk) }
                } catch {
                    // Reset or lost: the stream's close future closes the channel.
                    return
                }
            }
        }
        if case .active = self.state, self.autoRead {
            self.pipeline.read()
        }
    }

    // MARK: Inbound

    private func received(_ chunk: ByteBuffer) {
        guard case .active = self.state else { return }
        self.pipeline.fireChannelRead(chunk)
        self.pipeline.fireChannelReadComplete()
        if case .active = self.state, self.autoRead {
            self.pipeline.read()
        }
    }

    /// END_STREAM from the peer: as EOF on a socket that does not allow half-closure.
    private func inputEnded() {
        self.close0(error: ChannelError.eof, mode: .all, promise: nil)
    }

    // MARK: ChannelCore

    public func localAddress0() throws -> SocketAddress {
        guard let address = self.stream.localAddress else { throw ChannelError.operationUnsupported }
        return address
    }

    public func remoteAddress0() throws -> SocketAddress {
        guard let address = self.stream.remoteAddress else { throw ChannelError.operationUnsupported }
        return address
    }

    public func register0(promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    public func registerAlreadyConfigured0(promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    public func bind0(to: SocketAddress, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    public func connect0(to: SocketAddress, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    public func write0(_ data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .active = self.state, !self.outputClosed else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let buffer: ByteBuffer
        if let bytes = self.tryUnwrapData(data, as: ByteBuffer.self) {
            buffer = bytes
        } else if case .byteBuffer(let bytes) = self.tryUnwrapData(data, as: IOData.self) {
            buffer = bytes
        } else {
            promise?.fail(ChannelError.operationUnsupported)
            return
        }
        self.pendingWrites.append((buffer, promise))
    }

    public func flush0() {
        guard !self.pendingWrites.isEmpty else { return }
        let writes = self.pendingWrites
        self.pendingWrites = []
        let result: HTTP2WriteResult = self.streamClosed ? .closed : self.stream.writeOnEventLoop(contentsOf: writes.map(\.buffer))
        switch result {
        case .writable:
            writes.forEach { $0.promise?.succeed() }
        case .aboveHighWatermark:
            writes.forEach { $0.promise?.succeed() }
            self.becameUnwritable()
        case .closed:
            writes.forEach { $0.promise?.fail(ChannelError.ioOnClosedChannel) }
        }
    }

    public func read0() {
        guard case .active = self.state else { return }
        self.demand.grant()
    }

    public func close0(error: any Error, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch (self.state, mode) {
        case (.closed, _):
            promise?.fail(ChannelError.alreadyClosed)
        case (.active, .input):
            promise?.fail(ChannelError.operationUnsupported)
        case (.active, .output):
            self.finishOutput()
            promise?.succeed()
            self.pipeline.fireUserInboundEventTriggered(ChannelEvent.outputClosed)
        case (.active, .all):
            self.state = .closed
            self.active.store(false, ordering: .releasing)
            self.finishOutput()
            for write in self.pendingWrites {
                write.promise?.fail(ChannelError.ioOnClosedChannel)
            }
            self.pendingWrites = []
            self.demand.cancel()
            self.reader?.cancel()
            self.reader = nil
            promise?.succeed()
            self.pipeline.fireChannelInactive()
            self.pipeline.fireChannelUnregistered()
            let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
            self.eventLoop.execute {
                let channel = loopBound.value
                channel.removeHandlers(pipeline: channel.pipeline)
                channel.closePromise.succeed()
            }
        }
    }

    public func triggerUserOutboundEvent0(_ event: Any, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.operationUnsupported)
    }

    public func channelRead0(_ data: NIOAny) {
        // Nobody in the pipeline took it: dropped, as a socket channel does.
    }

    public func errorCaught0(error: any Error) {
        // Reaching the end of the pipeline unhandled: the handlers close if they want to.
    }

    // MARK: Options

    public func setOption<Option: ChannelOption>(_ option: Option, value: Option.Value) -> EventLoopFuture<Void> {
        if self.eventLoop.inEventLoop {
            return self.eventLoop.makeCompletedFuture { try self.setOption0(option, value: value) }
        }
        // Off the loop: the channel is Sendable, and its state is touched only in the hop.
        return self.eventLoop.submit { try self.setOption0(option, value: value) }
    }

    public func getOption<Option: ChannelOption>(_ option: Option) -> EventLoopFuture<Option.Value> {
        if self.eventLoop.inEventLoop {
            return self.eventLoop.makeCompletedFuture { try self.getOption0(option) }
        }
        return self.eventLoop.flatSubmit {
            self.eventLoop.makeCompletedFuture { try self.getOption0(option) }
        }
    }

    /// `autoRead` is the one option a stream has; `allowRemoteHalfClosure` is always false.
    fileprivate func setOption0<Option: ChannelOption>(_ option: Option, value: Option.Value) throws {
        self.eventLoop.preconditionInEventLoop()
        if option is ChannelOptions.Types.AutoReadOption {
            let autoRead = value as! Bool
            let wasOff = !self.autoRead
            self.autoRead = autoRead
            if autoRead, wasOff, case .active = self.state {
                self.pipeline.read()
            }
        } else {
            throw ChannelError.operationUnsupported
        }
    }

    fileprivate func getOption0<Option: ChannelOption>(_ option: Option) throws -> Option.Value {
        self.eventLoop.preconditionInEventLoop()
        if option is ChannelOptions.Types.AutoReadOption {
            return self.autoRead as! Option.Value
        }
        if option is ChannelOptions.Types.AllowRemoteHalfClosureOption {
            return false as! Option.Value
        }
        throw ChannelError.operationUnsupported
    }

    // MARK: Helpers

    private func finishOutput() {
        guard !self.outputClosed else { return }
        self.outputClosed = true
        if !self.streamClosed {
            self.stream.finish()
        }
    }

    private func becameUnwritable() {
        if self.writable.exchange(false, ordering: .acquiringAndReleasing) {
            self.pipeline.fireChannelWritabilityChanged()
        }
        guard !self.waitingForWritable else { return }
        self.waitingForWritable = true
        self.stream.whenWritable { [self] in
            self.waitingForWritable = false
            if !self.writable.exchange(true, ordering: .acquiringAndReleasing), case .active = self.state {
                self.pipeline.fireChannelWritabilityChanged()
            }
        }
    }

    private struct SynchronousOptions: NIOSynchronousChannelOptions {
        let channel: HTTP2StreamChannel

        func setOption<Option: ChannelOption>(_ option: Option, value: Option.Value) throws {
            try self.channel.setOption0(option, value: value)
        }

        func getOption<Option: ChannelOption>(_ option: Option) throws -> Option.Value {
            try self.channel.getOption0(option)
        }
    }
}

/// The pipeline's read demand, handed to the task that takes chunks from the request body: one
/// `grant` lets one chunk through; `cancel` ends the task's wait for good.
private final class ReadDemand: Sendable {
    private struct State {
        var granted = false
        var cancelled = false
        var waiter: CheckedContinuation<Bool, Never>?
    }

    private let state = Mutex(State())

    /// Waits for a grant and takes it; false once cancelled.
    func next() async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let answer = self.state.withLock { state -> Bool? in
                if state.cancelled { return false }
                if state.granted {
                    state.granted = false
                    return true
                }
                state.waiter = continuation
                return nil
            }
            if let answer {
                continuation.resume(returning: answer)
            }
        }
    }

    /// Lets the next chunk through (grants do not add up: one read asks for one chunk).
    func grant() {
        let waiter = self.state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard !state.cancelled else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.granted = true
            return nil
        }
        waiter?.resume(returning: true)
    }

    func cancel() {
        let waiter = self.state.withLock { state -> CheckedContinuation<Bool, Never>? in
            state.cancelled = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: false)
    }
}
