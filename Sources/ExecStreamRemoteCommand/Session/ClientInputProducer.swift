package import ExecStreamCore
package import NIOCore
import Synchronization

/// A client's stdin as the producer of a session's stdin channel.
///
/// The protocol reader hands over what the client sent with `produce`, and calls
/// `waitUntilResumed()` before it reads more from the client. A process that does not read its
/// stdin therefore pauses the reader at the channel's high watermark, the reader stops consuming
/// the request body, and flow control stops the client: memory stays bounded.
package final class ClientInputProducer: IOChannelProducer {
    private struct State {
        var generation: ProducerGeneration?
        var paused = false
        var lastFlowSequence: UInt64 = 0
        /// Stopped (the channel is closing) or finished by us (end of stream, detach).
        var done = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var resumeCallbacks: [@Sendable () -> Void] = []
        var stopCallbacks: [@Sendable () -> Void] = []
    }

    private let id: IOChannelID
    private let registry: ChannelRegistry
    /// Whether the client's end of stdin ends the channel (exec, or attach with stdin_once) or
    /// only this producer's part in it (attach: the next client may write on).
    private let endOfInputClosesChannel: Bool
    private let state = Mutex(State())

    /// A producer for `id`, not attached yet: what it is handed before `attach` is dropped.
    package init(id: IOChannelID, registry: ChannelRegistry, endOfInputClosesChannel: Bool) {
        self.id = id
        self.registry = registry
        self.endOfInputClosesChannel = endOfInputClosesChannel
    }

    /// Attaches to the channel (a newer producer preempts an older one); false if the channel
    /// does not take one (it has ended, or does not exist).
    package func attach() -> Bool {
        guard let generation = self.registry.attachProducer(self.id, self) else { return false }
        self.state.withLock { $0.generation = generation }
        return true
    }

    /// The client sent these stdin bytes.
    package func produce(_ chunk: ByteBuffer) {
        guard let generation = self.state.withLock({ $0.done ? nil : $0.generation }) else { return }
        self.registry.produced(self.id, chunk, by: generation)
    }

    /// The client ended stdin: the process's stdin closes once every byte before this is written
    /// (unless other clients may write on: then this client only leaves).
    package func close() {
        guard let generation = self.finish() else { return }
        if self.endOfInputClosesChannel {
            self.registry.producerClosed(self.id, by: generation)
        } else {
            self.registry.producerDetached(self.id, by: generation)
        }
    }

    /// The client went away without ending stdin.
    package func detach() {
        guard let generation = self.finish() else { return }
        self.registry.producerDetached(self.id, by: generation)
    }

    /// True while the channel is above its high watermark: read no more from the client.
    package var isPaused: Bool {
        self.state.withLock { $0.paused && !$0.done }
    }

    /// Calls `callback` once the channel has room again (at once if it has, or if producing is
    /// over), from whichever thread resumes it.
    package func whenResumed(_ callback: @escaping @Sendable () -> Void) {
        let ready = self.state.withLock { state -> Bool in
            guard state.paused && !state.done else { return true }
            state.resumeCallbacks.append(callback)
            return false
        }
        if ready {
            callback()
        }
    }

    /// Returns once the channel has room again (at once if it has, or if producing is over).
    package func waitUntilResumed() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = self.state.withLock { state -> Bool in
                guard state.paused && !state.done else { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready {
                continuation.resume()
            }
        }
    }

    package func flowChanged(_ signal: ProducerFlowSignal, sequence: UInt64) {
        let (released, callbacks) = self.state.withLock { state -> ([CheckedContinuation<Void, Never>], [@Sendable () -> Void]) in
            guard sequence > state.lastFlowSequence else { return ([], []) }
            state.lastFlowSequence = sequence
            switch signal {
            case .pause:
                state.paused = true
                return ([], [])
            case .resume:
                state.paused = false
                defer {
                    state.waiters = []
                    state.resumeCallbacks = []
                }
                return (state.waiters, state.resumeCallbacks)
            }
        }
        released.forEach { $0.resume() }
        callbacks.forEach { $0() }
    }

    package func stop() {
        guard self.finish() != nil else { return }
        let callbacks = self.state.withLock { state in
            defer { state.stopCallbacks = [] }
            return state.stopCallbacks
        }
        callbacks.forEach { $0() }
    }

    /// Calls `callback` once if the registry stops this producer (a newer producer took the
    /// channel, or the channel is closing); never after the producer closed or detached itself.
    package func whenStopped(_ callback: @escaping @Sendable () -> Void) {
        self.state.withLock { state in
            if !state.done { state.stopCallbacks.append(callback) }
        }
    }

    /// Bytes the channel has received from every producer so far (the stream offset of the next
    /// stdin byte); nil if the channel is gone.
    package var channelReceivedByteCount: Int? {
        self.registry.snapshot(of: self.id)?.receivedByteCount
    }

    /// Its generation once attached.
    package var generation: ProducerGeneration? {
        self.state.withLock { $0.generation }
    }

    /// True once producing is over, by `stop`, `close` or `detach`.
    package var isDone: Bool {
        self.state.withLock { $0.done }
    }

    private func finish() -> ProducerGeneration? {
        let (generation, released, callbacks) = self.state.withLock {
            state -> (ProducerGeneration?, [CheckedContinuation<Void, Never>], [@Sendable () -> Void]) in
            guard !state.done else { return (nil, [], []) }
            state.done = true
            defer {
                state.waiters = []
                state.resumeCallbacks = []
            }
            return (state.generation, state.waiters, state.resumeCallbacks)
        }
        released.forEach { $0.resume() }
        callbacks.forEach { $0() }
        return generation
    }
}
