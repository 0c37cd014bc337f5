package import ExecStreamCore
package import ExecStreamProcess
package import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// A spawned process wired to its IOChannels, once for every kind of process that has channels
/// (an exec's, a container's main process): its output fds become the producers of the stdout and
/// stderr channels, its stdin fd the consumer of the stdin channel, and the reaper reports its
/// exit. In a terminal, stdout is the terminal's master side and stdin a duplicate of it.
///
/// The order is fixed: output readers (each attached before its first read), then `outputsReady`,
/// then the stdin writer and `stdinReady`, and only then the wait for the exit, so an exit is never
/// reported before its owner holds every end.
package enum ProcessChannelWiring {
    package static func wire(
        _ process: SpawnedProcess,
        owner: String,
        tty: Bool,
        stdin: Bool,
        registry: ChannelRegistry,
        on eventLoop: any EventLoop,
        outputsReady: ([ProcessOutputReader]) async -> Void,
        stdinReady: (ProcessInputWriter?) async -> Void,
        exited: @escaping @Sendable (ProcessExitStatus) -> Void
    ) async {
        let outputs: [(StandardStream, Int32)] =
            tty
            ? [(StandardStream.stdout, process.terminal.map { dup($0) })].compactMap { stream, fd in fd.map { (stream, $0) } }
            : [(StandardStream.stdout, process.stdout), (.stderr, process.stderr)].compactMap { stream, fd in fd.map { (stream, $0) } }
        let input: Int32? = tty ? (stdin ? process.terminal.map { dup($0) } : nil) : process.stdin
        var readers: [ProcessOutputReader] = []
        for (stream, fd) in outputs {
            if let reader = await ProcessOutputReader.start(fd: fd, id: IOChannelID(owner: owner, stream: stream), registry: registry, on: eventLoop) {
                readers.append(reader)
            }
        }
        await outputsReady(readers)
        var writer: ProcessInputWriter?
        if let input {
            // Stdin sent early waits in its channel until here. If the owner has ended meanwhile,
            // the channel's removal ends this writer through the registry.
            writer = await ProcessInputWriter.start(fd: input, id: IOChannelID(owner: owner, stream: .stdin), isTerminal: tty, registry: registry, on: eventLoop)
        }
        await stdinReady(writer)
        let pidfd = process.pidfd
        Task {
            exited(await ProcessReaper.shared.waitForExit(pidfd: pidfd))
        }
    }
}
