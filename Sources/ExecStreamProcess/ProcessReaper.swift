import CExecSys
public import ExecStreamCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Waits for children to exit without blocking anyone: one thread waits on every pidfd with
/// epoll and resumes each waiter when its child exits. Only our own children are reaped (by
/// pidfd), never "any child", so other code's children are left alone.
public final class ProcessReaper: Sendable {
    /// The reaper every spawn uses.
    public static let shared = ProcessReaper()

    private let epollFD: Int32
    private let waiters = Mutex([Int32: CheckedContinuation<ProcessExitStatus, Never>]())

    private init() {
        self.epollFD = execstream_reaper_create()
        precondition(self.epollFD >= 0, "epoll_create1 failed: \(errno)")
        let box = Unmanaged.passRetained(self)
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { argument in
            let reaper = Unmanaged<ProcessReaper>.fromOpaque(argument!).takeRetainedValue()
            reaper.run()
            return nil
        }, box.toOpaque())
        precondition(created == 0, "cannot start the process reaper thread: \(created)")
        pthread_detach(thread)
    }

    /// Suspends until the process behind `pidfd` exits, reaps it, closes `pidfd`, and returns how
    /// it ended. Call once per process.
    public func waitForExit(pidfd: Int32) async -> ProcessExitStatus {
        await withCheckedContinuation { continuation in
            self.waiters.withLock { $0[pidfd] = continuation }
            // Level-triggered readiness: a child that already exited is reported at once.
            if execstream_reaper_add(self.epollFD, pidfd) != 0 {
                self.finish(pidfd: pidfd)
            }
        }
    }

    private func run() {
        var ready = [Int32](repeating: -1, count: 64)
        while true {
            let count = execstream_reaper_wait(self.epollFD, &ready, Int32(ready.count))
            guard count > 0 else { continue }
            for index in 0..<Int(count) {
                self.finish(pidfd: ready[index])
            }
        }
    }

    private func finish(pidfd: Int32) {
        var code: Int32 = 0
        var signal: Int32 = 0
        let reaped = execstream_reap(pidfd, &code, &signal)
        guard reaped == 1 else {
            if reaped == 0 {
                // Spurious wake-up: watch again (the registration was one-shot).
                _ = execstream_reaper_remove(self.epollFD, pidfd)
                _ = execstream_reaper_add(self.epollFD, pidfd)
            }
            return
        }
        let status: ProcessExitStatus = signal == 0 ? .exited(code) : .signaled(signal)
        let continuation = self.waiters.withLock { $0.removeValue(forKey: pidfd) }
        _ = execstream_reaper_remove(self.epollFD, pidfd)
        close(pidfd)
        continuation?.resume(returning: status)
    }
}
