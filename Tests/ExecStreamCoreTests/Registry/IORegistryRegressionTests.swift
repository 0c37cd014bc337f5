import ExecStreamCore
import NIOCore
import Testing

/// One test per known failure of the reference design (kuasar's vmm-task IO channels), listed in
/// ARCHITECTURE.md. Each proves the failure cannot happen here.
@Suite("IOChannel registry: known failures of the reference design")
struct IORegistryRegressionTests {
    let id = IOChannelID.stdout("exec1")

    @Test("output is not lost when the producer closes while a consumer hands off to the next")
    func producerClosesDuringHandoff() {
        var h = RegistryHarness()
        h.register(self.id)
        let (producer, _) = h.attachProducer(self.id)
        let (old, _) = h.attachConsumer(self.id)
        #expect(deliveredText(h.produce(self.id, "0123456789", by: producer).delivery, to: old) == "0123456789")
        _ = h.produce(self.id, "tail", by: producer)

        let (new, attachEffects) = h.attachConsumer(self.id)  // the handoff begins
        #expect(attachEffects.preemptedConsumer == old)
        var effects = h.accepted(h.registry.producerClosed(self.id, by: producer, now: h.now))  // ...and the process exits
        #expect(effects.delivery == nil, "EOF must wait for the bytes still out and queued")

        effects = h.accepted(h.registry.deliveryFailed(self.id, by: old, deliveredByteCount: 4, now: h.now))
        #expect(deliveredText(effects.delivery, to: new) == "456789tail")
        effects = h.accepted(h.registry.delivered(self.id, byteCount: 10, by: new, now: h.now))
        #expect(effects.delivery == .endOfStream(new))
    }

    @Test("a preemptor does not hang when the old consumer drains to EOF")
    func preemptorDuringEndOfStream() {
        var h = RegistryHarness()
        h.register(self.id)
        let (producer, _) = h.attachProducer(self.id)
        let (old, _) = h.attachConsumer(self.id)
        let effects = h.accepted(h.registry.producerClosed(self.id, by: producer, now: h.now))
        #expect(effects.delivery == .endOfStream(old))

        let (new, attachEffects) = h.attachConsumer(self.id)
        #expect(attachEffects.preemptedConsumer == old)
        #expect(attachEffects.delivery == nil)
        // The old consumer did write EOF: the channel is drained, and the newcomer ends at once.
        let final = h.accepted(h.registry.endOfStreamDelivered(self.id, by: old, now: h.now))
        #expect(final.finishedConsumer == new)
        #expect(final.removal?.reason == .drained)

        // The other ending: the old consumer failed before EOF was out; the newcomer gets EOF.
        let other = IOChannelID.stdout("exec2")
        h.register(other)
        let (p2, _) = h.attachProducer(other)
        let (old2, _) = h.attachConsumer(other)
        _ = h.accepted(h.registry.producerClosed(other, by: p2, now: h.now))
        let (new2, _) = h.attachConsumer(other)
        let retried = h.accepted(h.registry.deliveryFailed(other, by: old2, deliveredByteCount: 0, now: h.now))
        #expect(retried.delivery == .endOfStream(new2))
    }

    @Test("a third concurrent attach wins at once and gets every remaining byte")
    func thirdConcurrentAttach() {
        var h = RegistryHarness()
        h.register(self.id)
        let (producer, _) = h.attachProducer(self.id)
        let (first, _) = h.attachConsumer(self.id)
        _ = h.produce(self.id, "abc", by: producer)
        let (second, e2) = h.attachConsumer(self.id)
        let (third, e3) = h.attachConsumer(self.id)
        #expect(e2.preemptedConsumer == first)
        #expect(e3.preemptedConsumer == second)
        #expect(h.registry.snapshot(of: self.id)?.consumer == third)
        let effects = h.accepted(h.registry.delivered(self.id, byteCount: 3, by: first, now: h.now))
        #expect(effects.delivery == nil)
        #expect(deliveredText(h.produce(self.id, "d", by: producer).delivery, to: third) == "d")
    }

    @Test("an empty chunk is not taken as end of stream")
    func emptyChunkIsNotEndOfStream() {
        var h = RegistryHarness()
        h.register(self.id)
        let (producer, _) = h.attachProducer(self.id)
        let (consumer, _) = h.attachConsumer(self.id)
        let effects = h.accepted(h.registry.produced(self.id, ByteBuffer(), by: producer, now: h.now))
        #expect(effects.isEmpty)
        #expect(h.registry.snapshot(of: self.id)?.phase == .producing)
        #expect(deliveredText(h.produce(self.id, "still here", by: producer).delivery, to: consumer) == "still here")
    }

    @Test("no leak when an exec fails to start, with or without a consumer waiting")
    func noLeakAfterFailedStart() {
        var h = RegistryHarness(options: IOChannelOptions(lingerTTL: .seconds(60)), tombstoneTTL: .seconds(1))
        let waited = IOChannelID.stdout("failed-with-client")
        h.register(waited)
        let (consumer, _) = h.attachConsumer(waited)
        // posix_spawn failed: no producer will ever attach.
        let effects = h.accepted(h.registry.removalRequested(waited, now: h.now))
        #expect(effects.delivery == .endOfStream(consumer), "the waiting client is not left hanging")
        _ = h.accepted(h.registry.endOfStreamDelivered(waited, by: consumer, now: h.now))

        let alone = IOChannelID.stdout("failed-alone")
        h.register(alone)
        _ = h.accepted(h.registry.removalRequested(alone, now: h.now))
        h.advance(by: .seconds(60))
        #expect(h.registry.tick(now: h.now).map(\.id) == [alone])
        #expect(h.registry.channelCount == 0)
        h.advance(by: .seconds(1))
        _ = h.registry.tick(now: h.now)
        #expect(h.registry.tombstoneCount == 0)
    }

    @Test("no leak when nobody ever attaches to an exec's channels")
    func noLeakWhenNobodyAttaches() {
        var h = RegistryHarness(options: IOChannelOptions(lingerTTL: .seconds(60)), tombstoneTTL: .seconds(1))
        for stream in StandardStream.allCases {
            h.register(IOChannelID(owner: "orphan", stream: stream))
        }
        h.advance(by: .seconds(59))
        #expect(h.registry.tick(now: h.now).isEmpty)
        h.advance(by: .seconds(1))
        #expect(h.registry.tick(now: h.now).count == 3)
        h.advance(by: .seconds(1))
        _ = h.registry.tick(now: h.now)
        #expect(h.registry.channelCount == 0)
        #expect(h.registry.tombstoneCount == 0)
    }

    @Test("a removal request does not drop queued bytes")
    func removalKeepsQueuedBytes() {
        var h = RegistryHarness()
        h.register(self.id)
        let (producer, _) = h.attachProducer(self.id)
        _ = h.produce(self.id, "queued", by: producer)
        var effects = h.accepted(h.registry.removalRequested(self.id, now: h.now))
        #expect(effects.stoppedProducer == producer)
        #expect(effects.removal == nil)
        #expect(h.registry.produced(self.id, ByteBuffer(string: "late"), by: producer, now: h.now) == .rejected(.producerClosed))

        let (consumer, attachEffects) = h.attachConsumer(self.id)
        #expect(deliveredText(attachEffects.delivery, to: consumer) == "queued")
        effects = h.accepted(h.registry.delivered(self.id, byteCount: 6, by: consumer, now: h.now))
        #expect(effects.delivery == .endOfStream(consumer))
    }

    @Test("a consumer gets one delivery at a time: credits are never overrun")
    func oneDeliveryInFlight() {
        var h = RegistryHarness(options: IOChannelOptions(maxDeliveryBytes: 4))
        h.register(self.id)
        let (producer, _) = h.attachProducer(self.id)
        let (consumer, _) = h.attachConsumer(self.id)
        #expect(deliveredText(h.produce(self.id, "ab", by: producer).delivery, to: consumer) == "ab")
        #expect(h.produce(self.id, "cd", by: producer).delivery == nil, "nothing more until the first is acknowledged")
        #expect(h.produce(self.id, "ef", by: producer).delivery == nil)
        #expect(h.registry.delivered(self.id, byteCount: 3, by: consumer, now: h.now) == .rejected(.mismatchedAcknowledgement))
        let effects = h.accepted(h.registry.delivered(self.id, byteCount: 2, by: consumer, now: h.now))
        #expect(deliveredText(effects.delivery, to: consumer) == "cdef", "up to maxDeliveryBytes at once")
    }

    @Test("stdin written before the process reads it is not dropped")
    func stdinBeforeProcessReads() {
        var h = RegistryHarness()
        let stdin = IOChannelID.stdin("exec1")
        h.register(stdin)
        let (client, _) = h.attachProducer(stdin)
        _ = h.produce(stdin, "early ", by: client)
        _ = h.produce(stdin, "input", by: client)
        _ = h.accepted(h.registry.producerClosed(stdin, by: client, now: h.now))

        // The process starts only now; its stdin writer attaches as the consumer.
        let (writer, effects) = h.attachConsumer(stdin)
        #expect(deliveredText(effects.delivery, to: writer) == "early input")
        let end = h.accepted(h.registry.delivered(stdin, byteCount: 11, by: writer, now: h.now))
        #expect(end.delivery == .endOfStream(writer))
    }
}

@Suite("IOChannel registry: statistics")
struct IORegistryStatisticsTests {
    @Test("buffered bytes are queued and in flight, over every channel; paused producers are above the high watermark")
    func statistics() {
        var h = RegistryHarness(options: IOChannelOptions(highWatermark: 8, lowWatermark: 2))
        let (out, err) = (IOChannelID(owner: "s", stream: .stdout), IOChannelID(owner: "s", stream: .stderr))
        h.register(out)
        h.register(err)
        var expected = IORegistryStatistics()
        expected.channelCount = 2
        #expect(h.registry.statistics == expected)
        let (outProducer, _) = h.attachProducer(out)
        let (errProducer, _) = h.attachProducer(err)
        _ = h.produce(out, "0123456789", by: outProducer)  // over the high watermark: paused
        _ = h.produce(err, "abc", by: errProducer)
        let (consumer, _) = h.attachConsumer(err)  // "abc" goes in flight: still buffered
        (expected.bufferedByteCount, expected.pausedProducerCount) = (13, 1)
        #expect(h.registry.statistics == expected)
        _ = h.accepted(h.registry.delivered(err, byteCount: 3, by: consumer, now: h.now))
        expected.bufferedByteCount = 10
        #expect(h.registry.statistics == expected)
    }
}
