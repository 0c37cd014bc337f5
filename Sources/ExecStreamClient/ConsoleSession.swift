public import ExecStreamCore
import NIOCore
import Synchronization

/// A console driven by a script, with no sleeps: `send` types and returns once the terminal has
/// taken the bytes, `expect` waits for a pattern and takes the output up to it, `run` types a
/// command between two fences (`ConsoleCommandFence`) and returns its output and exit status.
///
/// It runs over a `ConsoleTerminal`: a `ResumableAttachClient` to a container's main process on
/// a terminal (a dropped connection is taken up again with nothing lost and nothing repeated), or
/// a `CreditedExecClient` running a shell on a terminal. Either's stdin window says when the
/// terminal has taken what was typed. Steps are meant to be taken one at a time, as a script
/// does.
public final class ConsoleSession: Sendable {
    /// Why a step failed.
    public struct Failure: Error, Hashable, Sendable, CustomStringConvertible {
        /// A stable code for scripts.
        public enum Code: String, Hashable, Sendable {
            /// The pattern (or the fence) did not appear in time.
            case timeout
            /// The console ended (its main process exited, or the connection could not be
            /// taken up again).
            case ended
            /// A regular expression that does not compile.
            case invalidPattern = "invalid_pattern"
        }

        public var code: Code
        public var message: String
        /// The last output seen and not taken, to show what was there instead.
        public var tail: String

        public var description: String { self.message }
    }

    /// The most bytes typed before waiting for the terminal to take them: well under a canonical
    /// line's 4 KiB, beyond which the kernel drops input.
    public static let maxTypedChunk = 1024

    private struct State {
        var transcript = ConsoleTranscript()
        /// Output arrived (or the console ended) since the last wait looked.
        var changed = false
        var waiter: CheckedContinuation<Void, Never>?
        var timer: Task<Void, Never>?
        /// Why the console ended, once it has.
        var ended: String?
    }

    private let terminal: any ConsoleTerminal
    /// With prompt fencing: the prompt, awaited at a line's start after each `run`.
    private let prompt: ConsoleTranscript.Search?
    private let state = Mutex(State())
    private let runner: Mutex<Task<Void, Never>?> = Mutex(nil)

    /// A console over `terminal`, which must have asked for stdin, stdout and a terminal. With
    /// `prompt` (a regular expression), each `run` also waits for the shell's next prompt at the
    /// start of a line and takes it, so the next step starts where the shell is ready for it.
    public init(terminal: any ConsoleTerminal, prompt: String? = nil) throws(Failure) {
        self.terminal = terminal
        do {
            self.prompt = try prompt.map { (prompt) throws(ConsoleTranscript.InvalidPattern) in
                try ConsoleTranscript.Search(.regularExpression("(?m)^(?:\(prompt))"))
            }
        } catch {
            throw Failure(code: .invalidPattern, message: "invalid prompt: \(error.description)", tail: "")
        }
    }

    /// Starts reading the console; every byte it prints goes into the transcript.
    public func start(onReconnect: @escaping @Sendable (ClientError) -> Void = { _ in }) {
        let task = Task {
            let reason: String
            do {
                let result = try await self.terminal.run(output: { _, bytes in self.received(bytes) }, onReconnect: onReconnect)
                reason = result.message.isEmpty ? "the console's process exited" : result.message
            } catch {
                reason = (error as? ClientError)?.message ?? "\(error)"
            }
            self.changed { $0.ended = reason }
        }
        self.runner.withLock { $0 = task }
    }

    /// Leaves the console: reading stops and the stream goes. An attached console's process runs
    /// on (its stdin stays open), as after any attach; an exec'd shell is killed with its stream.
    public func close() {
        self.runner.withLock { $0 }?.cancel()
    }

    /// Types `bytes` in chunks the terminal can hold, each once the terminal has taken the one
    /// before; returns once it has taken them all. Fails with `timeout` if it has not within
    /// `timeout` (a process that does not read its terminal).
    public func send(_ bytes: [UInt8], timeout: Duration = .seconds(30)) async throws(Failure) {
        let deadline = ContinuousClock.now + max(timeout, .zero)
        var offset = 0
        while offset < bytes.count {
            if let reason = self.state.withLock({ $0.ended }) {
                throw self.failure(.ended, "the console ended before everything was typed: \(reason)")
            }
            let end = min(bytes.count, offset + Self.maxTypedChunk)
            await self.terminal.sendStdin(ByteBuffer(bytes: bytes[offset..<end]))
            switch await self.terminal.stdinTaken(before: deadline) {
            case .taken:
                break
            case .timedOut:
                throw self.failure(.timeout, "the terminal did not take what was typed within \(timeout) (\(offset) of \(bytes.count) bytes taken)")
            case .closed:
                throw self.failure(.ended, "the terminal did not take everything typed: the console's stdin is closed")
            case .ended:
                // The console's stream is over; its reason comes as soon as the reader has it.
                throw self.failure(.ended, "the console ended before everything was typed: \(await self.endReason())")
            }
            offset = end
        }
    }

    /// Waits up to `timeout` for `pattern`, and takes the output up to the end of its first match.
    public func expect(_ pattern: ConsoleTranscript.Pattern, timeout: Duration) async throws(Failure) -> ConsoleTranscript.Match {
        var search: ConsoleTranscript.Search
        do {
            search = try ConsoleTranscript.Search(pattern)
        } catch {
            throw self.failure(.invalidPattern, error.description)
        }
        // One search across arrivals: a literal looks at each byte once.
        return try await self.wait(for: "\(pattern)", timeout: timeout) { transcript in
            transcript.take(&search)
        }
    }

    /// Runs `command` (one line of POSIX shell) at the console's shell and returns what it
    /// printed and its exit status; whatever the shell prints next (its prompt) stays for the
    /// next step. `input`, if any, is typed once the command has started (its start fence is
    /// out), for a command that reads from the terminal.
    public func run(_ command: String, input: [UInt8]? = nil, timeout: Duration) async throws(Failure) -> ConsoleCommandFence.Result {
        let fence = ConsoleCommandFence.random()
        let deadline = ContinuousClock.now + timeout
        try await self.send(Array(fence.input(for: command).utf8), timeout: deadline - .now)
        // Each arrival is searched once, however much the command prints.
        var scan = ConsoleCommandFence.Scan()
        if let input {
            try await self.wait(for: "the start of \(JSONWriter.quoted(command))", timeout: deadline - .now) { transcript in
                fence.hasStarted(in: transcript, scan: &scan) ? () : nil
            }
            try await self.send(input, timeout: deadline - .now)
        }
        let result = try await self.wait(for: "the end of \(JSONWriter.quoted(command))", timeout: deadline - .now) { transcript in
            fence.take(from: &transcript, scan: &scan)
        }
        if var prompt = self.prompt {
            _ = try await self.wait(for: "the prompt after \(JSONWriter.quoted(command))", timeout: deadline - .now) { transcript in
                transcript.take(&prompt)
            }
        }
        return result
    }

    // MARK: Waiting

    /// Takes from the transcript with `take` until it gives something, the console ends, or
    /// `timeout` passes. `take` searches a copy, outside the lock, so output goes on arriving
    /// while a regular expression is searched; only appends happen meanwhile, so what `take`
    /// took from the copy's front is then dropped from the transcript's.
    private func wait<Value>(for what: String, timeout: Duration, _ take: (inout ConsoleTranscript) -> Value?) async throws(Failure) -> Value {
        let deadline = ContinuousClock.now + max(timeout, .zero)
        while true {
            let (snapshot, ended) = self.state.withLock { state in
                state.changed = false
                return (state.transcript, state.ended)
            }
            var transcript = snapshot
            if let value = take(&transcript) {
                let taken = snapshot.pendingCount - transcript.pendingCount
                self.state.withLock { $0.transcript.discard(upTo: taken) }
                return value
            }
            if let ended { throw self.failure(.ended, "the console ended while waiting for \(what): \(ended)") }
            guard ContinuousClock.now < deadline else {
                throw self.failure(.timeout, "\(what) did not come within \(timeout)")
            }
            await self.nextChange(until: deadline)
        }
    }

    /// Why the console ended, once it has (the reader sets it right after its stream ends).
    private func endReason() async -> String {
        while true {
            if let reason = self.state.withLock({ $0.ended }) { return reason }
            await self.nextChange(until: .now + .seconds(3600))
        }
    }

    /// Returns when output arrives, the console ends, or `deadline` passes.
    private func nextChange(until deadline: ContinuousClock.Instant) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let waiting = self.state.withLock { state -> Bool in
                guard !state.changed, state.ended == nil else { return false }
                state.waiter = continuation
                // The deadline is a limit on the wait, not a wait for an event.
                state.timer = Task {
                    try? await Task.sleep(until: deadline)
                    self.changed { _ in }
                }
                return true
            }
            if !waiting { continuation.resume() }
        }
    }

    private func received(_ bytes: ByteBuffer) {
        self.changed { $0.transcript.append(bytes.readableBytesView) }
    }

    /// Applies `change` and wakes the waiting step, if any.
    private func changed(_ change: (inout State) -> Void) {
        let (waiter, timer) = self.state.withLock { state in
            change(&state)
            state.changed = true
            defer {
                state.waiter = nil
                state.timer = nil
            }
            return (state.waiter, state.timer)
        }
        timer?.cancel()
        waiter?.resume()
    }

    private func failure(_ code: Failure.Code, _ message: String) -> Failure {
        Failure(code: code, message: message, tail: self.state.withLock { $0.transcript.tail() })
    }
}
