package import ExecStreamCore
package import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Reads one output of a process (a pipe, or the terminal's master side) on an event loop and
/// produces it into its IOChannel. Reading pauses when the channel is above its high watermark,
/// so a process that writes faster than the client reads blocks in `write(2)`, as it would on
/// a full pipe, and the server's memory stays bounded.
package final class ProcessOutputReader: IOChannelProducer {
    private struct State {
        var channel: (any Channel)?
        var paused = false
        var lastFlowSequence: UInt64 = 0
        var stopped = false
    }

    private let state = Mutex(State())

    private init() {}

    /// Attaches to `id`, takes ownership of `fd` and starts reading. Nil (and `fd` closed) when
    /// the channel does not accept a producer.
    package static func start(fd: Int32, id: IOChannelID, registry: ChannelRegistry, on eventLoop: any EventLoop) async -> ProcessOutputReader? {
        // Attach first: the handler must know its generation before the first read, and a
        // pause that arrives meanwhile is applied as the channel is set up.
        let reader = ProcessOutputReader()
        guard let generation = registry.attachProducer(id, reader) else {
            Glibc.close(fd)
            return nil
        }
        do {
            let channel = try await NIOPipeBootstrap(group: eventLoop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ReadHandler(id: id, generation: generation, registry: registry))
                        // Known before the first read: from here on every flow signal reaches the
                        // channel, and the one that came before is applied now.
                        reader.state.withLock { $0.channel = channel }
                        try reader.applyFlow(to: channel)
                    }
                }
                .takingOwnershipOfDescriptor(input: fd)
                .get()
            if reader.state.withLock({ $0.stopped }) {
                channel.close(promise: nil)
            }
        } catch {
            Glibc.close(fd)
            registry.producerClosed(id, by: generation)
            return nil
        }
        return reader
    }

    package func flowChanged(_ signal: ProducerFlowSignal, sequence: UInt64) {
        let channel = self.state.withLock { state -> (any Channel)? in
            guard sequence > state.lastFlowSequence else { return nil }
            state.lastFlowSequence = sequence
            switch signal {
            case .pause: state.paused = true
            case .resume: state.paused = false
            }
            return state.channel
        }
        guard let channel else { return }
        channel.eventLoop.execute {
            try? self.applyFlow(to: channel)
        }
    }

    package func stop() {
        let channel = self.state.withLock { state -> (any Channel)? in
            state.stopped = true
            return state.channel
        }
        channel?.close(promise: nil)
    }

    /// Brings the channel's reading in line with the latest flow signal (on its event loop).
    private func applyFlow(to channel: any Channel) throws {
        let paused = self.state.withLock { $0.paused }
        try channel.syncOptions?.setOption(.autoRead, value: !paused)
    }

    private final class ReadHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        private let id: IOChannelID
        private let generation: ProducerGeneration
        private let registry: ChannelRegistry

        init(id: IOChannelID, generation: ProducerGeneration, registry: ChannelRegistry) {
            self.id = id
            self.generation = generation
            self.registry = registry
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.registry.produced(self.id, self.unwrapInboundIn(data), by: self.generation)
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? ChannelEvent, case .inputClosed = event {
                context.close(promise: nil)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // A terminal's master reads EIO once the last slave fd closes: that is end of output.
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            // End of output, or stopped: either way this producer is done (a stale close after a
            // stop is refused by the registry without harm).
            self.registry.producerClosed(self.id, by: self.generation)
        }
    }
}

/// Writes what a process's stdin channel delivers into the process (a pipe, or the terminal's
/// master side). End of stream closes the process's stdin, after every buffered byte is written.
package final class ProcessInputWriter: IOChannelConsumer {
    private let channel: any Channel
    private let registry: ChannelRegistry
    /// True for a terminal (end of stdin is written as ^D).
    private let isTerminal: Bool

    /// Takes ownership of `fd` and attaches to `id`. Nil (and `fd` closed) if that fails.
    package static func start(fd: Int32, id: IOChannelID, isTerminal: Bool, registry: ChannelRegistry, on eventLoop: any EventLoop) async
        -> ProcessInputWriter?
    {
        let channel: any Channel
        do {
            channel = try await NIOPipeBootstrap(group: eventLoop)
                .takingOwnershipOfDescriptor(output: fd)
                .get()
        } catch {
            Glibc.close(fd)
            return nil
        }
        let writer = ProcessInputWriter(channel: channel, registry: registry, isTerminal: isTerminal)
        guard registry.attachConsumer(id, writer) != nil else {
            channel.close(promise: nil)
            return nil
        }
        return writer
    }

    private init(channel: any Channel, registry: ChannelRegistry, isTerminal: Bool) {
        self.channel = channel
        self.registry = registry
        self.isTerminal = isTerminal
    }

    package func deliver(_ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int, channel id: IOChannelID, generation: ConsumerGeneration) {
        let channel = self.channel
        let registry = self.registry
        channel.eventLoop.execute {
            let last = chunks.count - 1
            let writes = chunks.enumerated().map { index, chunk in
                index == last ? channel.writeAndFlush(chunk) : channel.write(chunk)
            }
            EventLoopFuture.whenAllComplete(writes, on: channel.eventLoop).whenSuccess { results in
                var written = 0
                for (chunk, result) in zip(chunks, results) {
                    guard case .success = result else {
                        // The process closed its stdin or exited: this consumer is done.
                        registry.deliveryFailed(id, by: generation, deliveredByteCount: written)
                        channel.close(promise: nil)
                        return
                    }
                    written += chunk.readableBytes
                }
                registry.delivered(id, byteCount: byteCount, by: generation)
            }
        }
    }

    package func deliverEndOfStream(channel id: IOChannelID, generation: ConsumerGeneration) {
        let channel = self.channel
        let registry = self.registry
        let isTerminal = self.isTerminal
        channel.eventLoop.execute {
            // A terminal's master stays open for output, so its end of input is ^D, which the
            // line discipline turns into end of file.
            let ended = isTerminal ? channel.writeAndFlush(ByteBuffer(bytes: [0x04])) : channel.eventLoop.makeSucceededVoidFuture()
            ended.whenComplete { _ in
                channel.close(promise: nil)
                registry.endOfStreamDelivered(id, by: generation)
            }
        }
    }

    package func ended(channel id: IOChannelID, generation: ConsumerGeneration, reason: IOChannelConsumerEnd) {
        self.close()
    }

    /// Closes the process's stdin now (the session is over).
    package func close() {
        self.channel.close(promise: nil)
    }
}
