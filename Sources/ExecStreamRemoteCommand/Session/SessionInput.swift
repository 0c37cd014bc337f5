import ExecStreamCore
import NIOCore
import Synchronization

/// The input side of a session: where an adapter puts every `ClientEvent`, from any thread.
///
/// Stdin goes straight into the session's stdin channel (no hop: it is the hot path of input),
/// and the verdict says whether the adapter may read on. Resizes and a vanished client go to the
/// session on its event loop. Nothing here is protocol-specific, so every transport pauses,
/// ends stdin and vanishes in exactly the same way.
final class SessionInput: Sendable {
    private let producer: ClientInputProducer?
    /// Until the session is released: an adapter may keep its input longer (it may even get it
    /// back from `start()` after a session that ended at once has released it), so the input must
    /// not keep the session, and through it the adapter, alive.
    private let session: Mutex<NIOLoopBound<ExecSession>?>
    private let observer: any SessionObserver
    private let observed: ObservedSession
    private let stdinBytes = Atomic<Int>(0)

    init(producer: ClientInputProducer?, session: NIOLoopBound<ExecSession>, observer: any SessionObserver, observed: ObservedSession) {
        self.producer = producer
        self.session = Mutex(session)
        self.observer = observer
        self.observed = observed
    }

    /// Stdin bytes the client has sent into the session so far.
    var stdinByteCount: Int {
        self.stdinBytes.load(ordering: .relaxed)
    }

    /// Carries out what the client did.
    @discardableResult
    func receive(_ event: ClientEvent) -> ClientInputVerdict {
        switch event {
        case .stdin(let bytes):
            guard let producer = self.producer, bytes.readableBytes > 0 else { return .readMore }
            producer.produce(bytes)
            self.stdinBytes.add(bytes.readableBytes, ordering: .relaxed)
            self.observer.transferred(bytes.readableBytes, of: .stdin, in: self.observed)
            return producer.isPaused ? .pauseReading : .readMore
        case .stdinClosed:
            self.producer?.close()
            return .readMore
        case .resize(let bytes):
            self.onSessionLoop { $0.resizeReceived(bytes) }
            return .readMore
        case .gone(let reason):
            self.onSessionLoop { $0.clientGone(reason) }
            return .readMore
        }
    }

    /// Calls `callback` (from any thread) once the adapter may read on after `.pauseReading`;
    /// at once if it may already.
    func whenReadable(_ callback: @escaping @Sendable () -> Void) {
        guard let producer = self.producer else { return callback() }
        producer.whenResumed(callback)
    }

    /// Returns once the adapter may read on after `.pauseReading`.
    func readable() async {
        await self.producer?.waitUntilResumed()
    }

    /// Whether stdin still takes bytes: the client asked for it, its channel exists, and neither
    /// the client nor the session has ended it.
    var acceptsStdin: Bool {
        guard let producer = self.producer else { return false }
        return !producer.isDone
    }

    /// Whether stdin is above its channel's high watermark.
    var stdinIsPaused: Bool {
        self.producer?.isPaused ?? false
    }

    /// The stream offset of the next stdin byte (what the stdin channel has received from every
    /// client so far); nil without stdin.
    var stdinChannelOffset: Int? {
        guard self.acceptsStdin else { return nil }
        return self.producer?.channelReceivedByteCount
    }

    /// The session has let go of everything: events that come later have nobody to go to.
    func sessionReleased() {
        self.session.withLock { $0 = nil }
    }

    private func onSessionLoop(_ work: @escaping @Sendable (ExecSession) -> Void) {
        guard let session = self.session.withLock({ $0 }) else { return }
        if session.eventLoop.inEventLoop {
            work(session.value)
        } else {
            session.eventLoop.execute { work(session.value) }
        }
    }
}

extension SessionInput {
    /// After `.pauseReading`, for an adapter on a channel pipeline (WebSocket, SPDY): stops
    /// reading `channel` (so the socket's or the stream's own flow control holds the client back)
    /// until stdin has room again.
    func pauseReading(_ channel: any Channel) {
        try? channel.syncOptions?.setOption(.autoRead, value: false)
        self.whenReadable {
            channel.eventLoop.execute { try? channel.syncOptions?.setOption(.autoRead, value: true) }
        }
    }
}
