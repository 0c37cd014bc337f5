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

/// The local end of `exec` (and later `attach`): this process's stdin, stdout, stderr and
/// terminal joined to one native stream.
struct RemoteTerminalSession {
    let client: CRIClient
    let tty: Bool
    let stdin: Bool

    /// Streams until the remote command ends; returns its exit code.
    func run(url: String) async throws -> Int32 {
        let localTerminal = self.tty && isatty(STDIN_FILENO) == 1
        let size = self.tty ? Self.terminalSize() : nil
        let stream = try await NativeStreamClient.open(url: url, on: self.client.connection, terminalSize: size)
        let rawMode = localTerminal ? RawTerminalMode(fd: STDIN_FILENO) : nil
        defer { rawMode?.restore() }

        var resizes: (any DispatchSourceSignal)?
        if self.tty, isatty(STDOUT_FILENO) == 1 {
            signal(SIGWINCH, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: SIGWINCH)
            source.setEventHandler {
                guard let size = Self.terminalSize() else { return }
                Task { try? await stream.resize(size) }
            }
            source.resume()
            resizes = source
        }
        defer { resizes?.cancel() }

        let pump: Task<Void, Never>? = self.stdin ? Task { await Self.pumpStandardInput(into: stream) } : nil
        defer { pump?.cancel() }

        let result = try await stream.receive { stream, bytes in
            StandardIO.write(bytes, to: stream == .stderr ? STDERR_FILENO : STDOUT_FILENO)
        }
        guard let code = result.exitCode else {
            throw ClientError(code: .commandFailed, message: result.message)
        }
        return Int32(code)
    }

    /// Copies this process's stdin to the stream, then closes the remote stdin.
    private static func pumpStandardInput(into stream: NativeStreamClient) async {
        let reader = StandardInputReader()
        for await chunk in reader.chunks {
            do {
                try await stream.sendStdin(chunk)
            } catch {
                return
            }
            reader.taken()
        }
        try? await stream.closeStdin()
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
