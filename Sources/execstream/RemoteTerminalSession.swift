import CExecSys
import Dispatch
import ExecStreamClient
import ExecStreamCore
import Foundation
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The remote end a terminal session drives: a native exec stream, or a resumable attach.
protocol RemoteTerminalStream: Sendable {
    /// Sends stdin bytes (suspends while the remote end is behind).
    func sendStdin(_ bytes: ByteBuffer) async throws
    /// Ends the remote stdin after what was sent.
    func closeStdin() async
    /// Resizes the remote terminal.
    func resize(_ size: TerminalSize) async
    /// Streams output to `output` until the remote command ends.
    func receive(output: @escaping (StandardStream, ByteBuffer) -> Void) async throws -> RemoteCommandResult
}

/// `execstream exec`'s remote end: one native stream (an exec ends with its stream).
struct ExecStream: RemoteTerminalStream {
    let stream: NativeStreamClient

    func sendStdin(_ bytes: ByteBuffer) async throws {
        try await self.stream.sendStdin(bytes)
    }

    func closeStdin() async {
        try? await self.stream.closeStdin()
    }

    func resize(_ size: TerminalSize) async {
        try? await self.stream.resize(size)
    }

    func receive(output: @escaping (StandardStream, ByteBuffer) -> Void) async throws -> RemoteCommandResult {
        try await self.stream.receive { stream, bytes in output(stream, bytes) }
    }
}

/// `execstream attach`'s remote end: reconnects on its own, and tells the user when it does.
struct ReconnectingAttachStream: RemoteTerminalStream {
    let client: ResumableAttachClient
    /// Whether to say so on stderr (not on a raw terminal, where it would garble the screen).
    let reportsReconnects: Bool

    func sendStdin(_ bytes: ByteBuffer) async throws {
        await self.client.sendStdin(bytes)
    }

    func closeStdin() async {
        self.client.closeStdin()
    }

    func resize(_ size: TerminalSize) async {
        await self.client.resize(size)
    }

    func receive(output: @escaping (StandardStream, ByteBuffer) -> Void) async throws -> RemoteCommandResult {
        let reports = self.reportsReconnects
        return try await self.client.run(output: { stream, bytes in output(stream, bytes) }) { failure in
            if reports {
                StandardIO.write(Array("execstream: connection lost (\(failure.message)); reconnecting\n".utf8), to: STDERR_FILENO)
            }
        }
    }
}

/// The local end of `exec` and `attach`: this process's stdin, stdout, stderr and terminal
/// joined to one remote stream.
struct RemoteTerminalSession {
    let tty: Bool
    let stdin: Bool

    /// Whether this process's stdin is a terminal that a tty session puts in raw mode.
    var usesLocalTerminal: Bool { self.tty && isatty(STDIN_FILENO) == 1 }

    /// The terminal size to start the remote process with.
    var initialTerminalSize: TerminalSize? { self.tty ? Self.terminalSize() : nil }

    /// Streams until the remote command ends; returns its exit code.
    func run(_ stream: any RemoteTerminalStream) async throws -> Int32 {
        let rawMode = self.usesLocalTerminal ? RawTerminalMode(fd: STDIN_FILENO) : nil
        defer { rawMode?.restore() }

        var resizes: (any DispatchSourceSignal)?
        if self.tty, isatty(STDOUT_FILENO) == 1 {
            signal(SIGWINCH, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: SIGWINCH)
            source.setEventHandler {
                guard let size = Self.terminalSize() else { return }
                Task { await stream.resize(size) }
            }
            source.resume()
            resizes = source
        }
        defer { resizes?.cancel() }

        let pump: Task<Void, Never>? = self.stdin ? Task { await Self.pumpStandardInput(into: stream) } : nil
        defer { pump?.cancel() }

        let result = try await stream.receive(output: { stream, bytes in
            StandardIO.write(bytes, to: stream == .stderr ? STDERR_FILENO : STDOUT_FILENO)
        })
        guard result.started, let code = result.exitCode else {
            throw ClientError(code: .commandFailed, message: result.message, exitCode: result.exitCode.map(Int32.init))
        }
        return Int32(code)
    }

    /// Copies this process's stdin to the stream, then closes the remote stdin.
    private static func pumpStandardInput(into stream: any RemoteTerminalStream) async {
        let reader = StandardInputReader()
        for await chunk in reader.chunks {
            do {
                try await stream.sendStdin(chunk)
            } catch {
                return
            }
            reader.taken()
        }
        await stream.closeStdin()
    }

    /// The size of this process's terminal, if stdout is one.
    static func terminalSize() -> TerminalSize? {
        var rows: UInt16 = 0
        var columns: UInt16 = 0
        for fd in [STDOUT_FILENO, STDIN_FILENO] where execstream_get_window_size(fd, &rows, &columns) == 0 && rows > 0 {
            return TerminalSize(width: columns, height: rows)
        }
        return nil
    }
}

/// Puts a terminal in raw mode (keys go to the remote terminal as typed) until `restore`.
final class RawTerminalMode: Sendable {
    private let fd: Int32
    private let saved: Mutex<termios?>

    init?(fd: Int32) {
        var original = termios()
        guard tcgetattr(fd, &original) == 0 else { return nil }
        var raw = original
        cfmakeraw(&raw)
        guard tcsetattr(fd, TCSANOW, &raw) == 0 else { return nil }
        self.fd = fd
        self.saved = Mutex(original)
    }

    func restore() {
        guard var original = self.saved.withLock({ saved -> termios? in
            defer { saved = nil }
            return saved
        }) else { return }
        tcsetattr(self.fd, TCSANOW, &original)
    }
}

/// Reads this process's stdin on a thread of its own (stdin may be a terminal, a pipe or a
/// regular file, and reads block), one chunk at a time: the next read waits until the previous
/// chunk was sent (`taken()`), so a slow remote stdin never makes this process buffer.
final class StandardInputReader: Sendable {
    /// Chunks of stdin, until end of file.
    let chunks: AsyncStream<ByteBuffer>
    private let sent = DispatchSemaphore(value: 0)

    init() {
        let (chunks, continuation) = AsyncStream<ByteBuffer>.makeStream()
        self.chunks = chunks
        let sent = self.sent
        Thread {
            var buffer = [UInt8](repeating: 0, count: 32 << 10)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                guard case .enqueued = continuation.yield(ByteBuffer(bytes: buffer[0..<count])) else { break }
                sent.wait()
            }
            continuation.finish()
        }.start()
    }

    /// The last chunk was sent: read the next one.
    func taken() {
        self.sent.signal()
    }
}
