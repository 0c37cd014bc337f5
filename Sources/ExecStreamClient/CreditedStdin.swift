import ExecStreamCore
public import NIOCore
import Synchronization

/// A client's stdin under the server's stdin credit (PROTOCOLS.md §9: stdin window frames, on a
/// stream with `execstream-stdin-credit: 1` or a resumable attach). Bytes wait in a
/// `StdinReplayBuffer` until a window's `taken` covers them, and go out only within the window's
/// `limit`; so `taken()` can say when the container's stdin channel has everything written so
/// far, and a reconnected stream sends on from the offset its first window names.
///
/// The user side (`send`, `taken`, `close`) may be called from any task; the stream side
/// (`sending(on:)`, `window`, `closedByServer`, `finish`) is called by the stream's reader.
public final class CreditedStdin: Sendable {
    /// Stdin bytes held at most before `send` waits (the server's window bounds what is on the
    /// wire; this bounds what waits for it).
    public static let maxBufferedBytes = 1 << 20
    /// The largest stdin frame sent.
    static let maxFrameBytes = 32 << 10

    private struct State {
        var replay = StdinReplayBuffer()
        /// `send` callers waiting for the buffer to have room.
        var spaceWaiters: [CheckedContinuation<Void, Never>] = []
        /// `taken` callers waiting for the buffer to empty, by a number of their own (so a
        /// deadline wakes only its caller).
        var takenWaiters: [Int: TakenWaiter] = [:]
        var nextWaiter = 0
        /// Wakes the current stream's sender.
        var wakeSender: AsyncStream<Void>.Continuation?
        /// The stream has ended for good: stdin is taken no more.
        var finished = false
    }

    /// A `taken` caller, and the timer of its deadline.
    private struct TakenWaiter {
        var continuation: CheckedContinuation<Void, Never>
        var timer: Task<Void, Never>?

        func resume() {
            self.timer?.cancel()
            self.continuation.resume()
        }
    }

    private let state = Mutex(State())

    public init() {}

    /// Queues bytes; waits while `maxBufferedBytes` are already waiting for the server.
    public func send(_ bytes: ByteBuffer) async {
        while true {
            let queued = self.state.withLock { state -> Bool in
                guard !state.finished, state.replay.pendingByteCount >= Self.maxBufferedBytes else {
                    if !state.finished && !state.replay.isEnded {
                        state.replay.append(bytes)
                    }
                    return true
                }
                return false
            }
            if queued { break }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = self.state.withLock { state -> Bool in
                    guard !state.finished, state.replay.pendingByteCount >= Self.maxBufferedBytes else { return true }
                    state.spaceWaiters.append(continuation)
                    return false
                }
                if ready { continuation.resume() }
            }
        }
        self.wakeSender()
    }

    /// What became of the stdin queued before a `taken()`.
    public enum Outcome: Hashable, Sendable {
        /// The container's stdin channel has every byte.
        case taken
        /// The server closed stdin: what was pending is dropped.
        case closed
        /// The stream ended for good before the channel took everything.
        case ended
        /// The deadline passed first: the bytes are still pending (the process is not reading).
        case timedOut
    }

    /// Waits until the server has said that the container's stdin channel took every byte
    /// queued so far, they never will be taken, or `deadline` passes. What a console needs
    /// before it types more.
    @discardableResult
    public func taken(before deadline: ContinuousClock.Instant? = nil) async -> Outcome {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            self.state.withLock { state in
                guard !state.finished, state.replay.pendingByteCount > 0, !state.replay.isClosedByServer else { return continuation.resume() }
                state.nextWaiter += 1
                let waiter = state.nextWaiter
                // The deadline is a limit on the wait, not a wait for an event.
                let timer = deadline.map { deadline in
                    Task {
                        guard (try? await Task.sleep(until: deadline)) != nil else { return }
                        self.state.withLock { $0.takenWaiters.removeValue(forKey: waiter) }?.resume()
                    }
                }
                state.takenWaiters[waiter] = TakenWaiter(continuation: continuation, timer: timer)
            }
        }
        return self.state.withLock { state in
            if state.replay.isClosedByServer { return .closed }
            if state.replay.pendingByteCount == 0 { return .taken }
            return state.finished ? .ended : .timedOut
        }
    }

    /// Ends stdin after every byte queued before.
    public func close() {
        self.state.withLock { $0.replay.end() }
        self.wakeSender()
    }

    // MARK: The stream's side

    /// Sends stdin on `stream`, within its windows, until the task is cancelled (the stream's
    /// reader cancels it when the stream ends) or the stream breaks. Nothing goes out before the
    /// stream's first window.
    func sending(on stream: NativeStreamClient) -> Task<Void, Never> {
        let (signals, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        self.state.withLock { state in
            state.replay.connectionStarted()
            state.wakeSender?.finish()
            state.wakeSender = wake
        }
        return Task {
            // Waking a finished stream's sender (until the next stream's replaces it) is a no-op.
            defer { wake.finish() }
            for await _ in signals {
                while true {
                    let frame = self.state.withLock { state -> NativeFrame? in
                        if let bytes = state.replay.nextSend(maxBytes: Self.maxFrameBytes) {
                            return .data(.stdin, bytes)
                        }
                        return state.replay.takeCloseToSend() ? .close(.stdin) : nil
                    }
                    guard let frame else { break }
                    do {
                        try await stream.send(frame)
                    } catch {
                        return
                    }
                }
            }
        }
    }

    /// The server's stdin window frame.
    func window(taken: UInt64, limit: UInt64) {
        self.changed { $0.window(taken: taken, limit: limit) }
    }

    /// The server's close(stdin) frame: stdin is closed for good.
    func closedByServer() {
        self.changed { $0.closedByServer() }
    }

    /// The stream ended for good: waiting callers go on, and nothing more is taken.
    func finish() {
        let (space, taken) = self.state.withLock { state -> ([CheckedContinuation<Void, Never>], [TakenWaiter]) in
            state.finished = true
            defer {
                state.spaceWaiters = []
                state.takenWaiters = [:]
            }
            return (state.spaceWaiters, Array(state.takenWaiters.values))
        }
        space.forEach { $0.resume() }
        taken.forEach { $0.resume() }
    }

    /// Applies a change to the replay buffer, then lets waiting callers and the sender go on.
    private func changed(_ change: (inout StdinReplayBuffer) -> Void) {
        let (space, taken) = self.state.withLock { state -> ([CheckedContinuation<Void, Never>], [TakenWaiter]) in
            change(&state.replay)
            var taken: [TakenWaiter] = []
            if state.replay.pendingByteCount == 0 || state.replay.isClosedByServer {
                taken = Array(state.takenWaiters.values)
                state.takenWaiters = [:]
            }
            guard state.replay.pendingByteCount < Self.maxBufferedBytes else { return ([], taken) }
            defer { state.spaceWaiters = [] }
            return (state.spaceWaiters, taken)
        }
        space.forEach { $0.resume() }
        taken.forEach { $0.resume() }
        self.wakeSender()
    }

    private func wakeSender() {
        let wake = self.state.withLock { $0.wakeSender }
        wake?.yield()
    }
}
