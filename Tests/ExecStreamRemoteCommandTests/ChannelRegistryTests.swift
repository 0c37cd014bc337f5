import ExecStreamCore
import NIOCore
import Synchronization
import Testing

@testable import ExecStreamRemoteCommand

/// Records what the registry asks of an endpoint.
final class RecordingEndpoint: IOChannelConsumer, IOChannelProducer {
    enum Call: Hashable {
        case deliver(String, ConsumerGeneration)
        case endOfStream(ConsumerGeneration)
        case ended(ConsumerGeneration, IOChannelConsumerEnd)
        case flow(ProducerFlowSignal, UInt64)
        case stop
    }

    let calls = Mutex<[Call]>([])

    var recorded: [Call] { self.calls.withLock { $0 } }

    func deliver(_ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int, channel: IOChannelID, generation: ConsumerGeneration) {
        let text = chunks.map { String(buffer: $0) }.joined()
        self.calls.withLock { $0.append(.deliver(text, generation)) }
    }

    func deliverEndOfStream(channel: IOChannelID, generation: ConsumerGeneration) {
        self.calls.withLock { $0.append(.endOfStream(generation)) }
    }

    func ended(channel: IOChannelID, generation: ConsumerGeneration, reason: IOChannelConsumerEnd) {
        self.calls.withLock { $0.append(.ended(generation, reason)) }
    }

    func flowChanged(_ signal: ProducerFlowSignal, sequence: UInt64) {
        self.calls.withLock { $0.append(.flow(signal, sequence)) }
    }

    func stop() {
        self.calls.withLock { $0.append(.stop) }
    }
}

@Suite("ChannelRegistry: the registry machine's owner")
struct ChannelRegistryTests {
    let id = IOChannelID(owner: "c1", stream: .stdout)

    @Test("bytes reach the consumer; end of stream after the last byte removes the channel")
    func deliveryAndRemoval() throws {
        let registry = ChannelRegistry()
        #expect(registry.register(self.id))
        let producer = RecordingEndpoint()
        let consumer = RecordingEndpoint()
        let writer = try #require(registry.attachProducer(self.id, producer))
        let reader = try #require(registry.attachConsumer(self.id, consumer))
        registry.produced(self.id, ByteBuffer(string: "hello"), by: writer)
        #expect(consumer.recorded == [.deliver("hello", reader)])
        registry.producerClosed(self.id, by: writer)
        registry.delivered(self.id, byteCount: 5, by: reader)
        #expect(consumer.recorded.last == .endOfStream(reader))
        registry.endOfStreamDelivered(self.id, by: reader)
        #expect(registry.channelCount == 0)
        // Late attaches end at once (the tombstone), unknown ids are not found.
        let late = RecordingEndpoint()
        #expect(registry.attachConsumer(self.id, late) == nil)
        #expect(late.recorded.count == 1)
        #expect(registry.attachConsumer(IOChannelID(owner: "nope", stream: .stdout), late) == nil)
        #expect(late.recorded.count == 1)
    }

    @Test("a newer consumer preempts the older one, which is told so")
    func preemption() throws {
        let registry = ChannelRegistry()
        _ = registry.register(self.id)
        let first = RecordingEndpoint()
        let second = RecordingEndpoint()
        let old = try #require(registry.attachConsumer(self.id, first))
        let new = try #require(registry.attachConsumer(self.id, second))
        #expect(first.recorded == [.ended(old, .preempted)])
        let producer = RecordingEndpoint()
        let writer = try #require(registry.attachProducer(self.id, producer))
        registry.produced(self.id, ByteBuffer(string: "x"), by: writer)
        #expect(second.recorded == [.deliver("x", new)])
        #expect(first.recorded.count == 1)
    }

    @Test("flow signals carry increasing sequence numbers, so reordered ones can be ignored")
    func flowSequences() throws {
        let registry = ChannelRegistry(configuration: .init(defaultChannelOptions: IOChannelOptions(highWatermark: 4, lowWatermark: 0, maxDeliveryBytes: 2)))
        _ = registry.register(self.id)
        let producer = RecordingEndpoint()
        let consumer = RecordingEndpoint()
        let writer = try #require(registry.attachProducer(self.id, producer))
        let reader = try #require(registry.attachConsumer(self.id, consumer))
        registry.produced(self.id, ByteBuffer(string: "ab"), by: writer)
        registry.produced(self.id, ByteBuffer(string: "cd"), by: writer)
        registry.delivered(self.id, byteCount: 2, by: reader)
        registry.delivered(self.id, byteCount: 2, by: reader)
        let signals = producer.recorded.compactMap { call -> (ProducerFlowSignal, UInt64)? in
            guard case .flow(let signal, let sequence) = call else { return nil }
            return (signal, sequence)
        }
        #expect(signals.map(\.0) == [.pause, .resume])
        #expect(signals[0].1 < signals[1].1)
    }

    @Test("a removal request stops the producer; queued bytes still drain to the consumer")
    func removalRequestDrains() throws {
        let registry = ChannelRegistry()
        _ = registry.register(self.id)
        let producer = RecordingEndpoint()
        let writer = try #require(registry.attachProducer(self.id, producer))
        registry.produced(self.id, ByteBuffer(string: "queued"), by: writer)
        registry.requestRemoval(self.id)
        #expect(producer.recorded.contains(.stop))
        let consumer = RecordingEndpoint()
        let reader = try #require(registry.attachConsumer(self.id, consumer))
        #expect(consumer.recorded == [.deliver("queued", reader)])
        registry.delivered(self.id, byteCount: 6, by: reader)
        #expect(consumer.recorded.last == .endOfStream(reader))
        registry.endOfStreamDelivered(self.id, by: reader)
        #expect(registry.channelCount == 0)
    }
}
