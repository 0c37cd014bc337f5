import ExecStreamCore
import NIOCore
import NIOPosix
import Testing

@testable import ExecStreamRemoteCommand

#if canImport(Glibc)
import Glibc
#endif

@Suite("Process output reader: reading pauses at the channel's high watermark")
struct ProcessOutputReaderTests {
    /// The channel crosses its watermark in the very first read, while the reader is still being
    /// set up: that pause must hold, or a process nobody reads is read without bound (seen with
    /// main processes started under load).
    @Test("a pause that arrives while the reader is being set up holds")
    func pauseDuringSetUpHolds() async throws {
        let registry = ChannelRegistry()
        let id = IOChannelID(owner: "reader-test", stream: .stdout)
        #expect(registry.register(id, options: IOChannelOptions(highWatermark: 4096, lowWatermark: 1024)))
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        let (readEnd, writeEnd) = (fds[0], fds[1])
        defer { close(writeEnd) }
        // A pipe that holds 1 MiB, filled before the reader starts: with the pause lost the reader
        // drains all of it into the channel; with the pause held it stops near the watermark.
        let setPipeSize: Int32 = 1031  // F_SETPIPE_SZ (Linux; hidden without _GNU_SOURCE)
        let capacity = Int(fcntl(writeEnd, setPipeSize, Int32(1 << 20)))
        try #require(capacity >= 1 << 20, "F_SETPIPE_SZ needs room under /proc/sys/fs/pipe-max-size")
        let block = [UInt8](repeating: 0x61, count: 64 << 10)
        for _ in 0..<16 {
            #expect(block.withUnsafeBytes { write(writeEnd, $0.baseAddress, $0.count) } == block.count)
        }
        let eventLoop = MultiThreadedEventLoopGroup.singleton.any()
        let reader = try #require(await ProcessOutputReader.start(fd: readEnd, id: id, registry: registry, on: eventLoop))
        // Let the loop run many times over: an unpaused reader reads a pipe's worth each time.
        for _ in 0..<64 {
            try await eventLoop.submit {}.get()
        }
        let queued = try #require(registry.snapshot(of: id)).queuedByteCount
        #expect(queued >= 4096, "the first read crossed the watermark")
        #expect(queued < 512 << 10, "reading stopped at the watermark instead of draining the pipe (\(queued) bytes queued)")
        #expect(registry.snapshot(of: id)?.producerPaused == true)
        reader.stop()
    }
}
