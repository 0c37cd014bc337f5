import ExecStreamCore
import NIOCore
import Testing

/// One test per guarantee of ARCHITECTURE.md ("The IOChannel registry").
@Suite("IOChannel registry: the six guarantees")
struct IORegistryGuaranteeTests {
    let id = IOChannelID.stdout("exec1")

    @Test("1. exactly once, in order, across a failure and a reattach")
    func exactlyOnceInOrder() {
        var h = RegistryHarness()
        h.register(self.id)
        let (producer, _) = h.attachProducer(self.id)
        let (first, _) = h.attachConsumer(self.id)

        let delivery = h.produce(self.id, "hello ", by: producer).delivery
        #expect(deliveredText(delivery, to: first) == "hello ")
        _ = h.produce(self.id, "wor", by: producer)  // queued behind the delivery in flight
        _ = h.produce(self.id, "ld", by: producer)

        // The first consumer wrote "hel" and died: "lo " goes back to the head of the queue.
        var effects = h.accepted(h.registry.deliveryFailed(self.id, by: first, deliveredByteCount: 3, now: h.now))
        #expect(effects.delivery == nil)
        var received = "hel"

        let (second, attachEffects) = h.attachConsumer(self.id)
        #expect(attachEffects.preemptedConsumer == nil)
        let resumed = deliveredText(attachEffects.delivery, to: second)
        #expect(resumed == "lo world")
        received += resumed ?? ""
        effects = h.accepted(h.registry.delivered(self.id, byteCount: 8, by: second, now: h.now))
        #expect(effects.delivery == nil)

        effects = h.accepted(h.registry.producerClosed(self.id, by: producer, now: h.now))
        #expect(effects.delivery == .endOfStream(second))
        effects = h.accepted(h.registry.endOfStreamDelivered(self.id, by: second, now: h.now))
        #expect(effects.removal == IOChannelRemoval(reason: .drained, droppedByteCount: 0))
        #expect(received == "hello world")
    }

    @Test("2. newest attach wins at once, for any number of concurrent attaches")
    func newestAttachWins() {
        var h = RegistryHarness()
        h.register(self.id)
        let (producer, _) = h.attachProducer(self.id)
        let (first, _) = h.attachConsumer(self.id)
        #expect(deliveredText(h.produce(self.id, "abc", by: producer).delivery, to: first) == "abc")

        var previous = first
        var newest = first
        for _ in 0..<5 {
            let (next, effects) = h.attachConsumer(self.id)
            #expect(effects.preemptedConsumer == previous, "the previous consumer is told at once")
            #expect(effects.delivery == nil, "the old consumer's delivery is still out")
            #expect(h.registry.snapshot(of: self.id)?.consumer == next)
            previous = next
            newest = next
        }
        // The first consumer reports its delivery; what it did not write goes to the newest.
        let effects = h.accepted(h.registry.deliveryFailed(self.id, by: first, deliveredByteCount: 1, now: h.now))
        #expect(deliveredText(effects.delivery, to: newest) == "bc")
        // Preempted consumers' later events are refused and harmless.
        #expect(h.registry.consumerDetached(self.id, by: first, now: h.now) == .rejected(.staleGeneration))
    }

    @Test("3. end of stream only after the last byte; tombstone answers late attaches; unknown ids are not found")
    func endOfStreamAfterLastByte() {
        var h = RegistryHarness(tombstoneTTL: .seconds(30))
        h.register(self.id)
        let (producer, _) = h.attachProducer(self.id)
        _ = h.produce(self.id, "last words", by: producer)
        var effects = h.accepted(h.registry.producerClosed(self.id, by: producer, now: h.now))
        #expect(effects.delivery == nil, "no consumer yet: nothing to deliver, and certainly not EOF")

        let (consumer, attachEffects) = h.attachConsumer(self.id)
        #expect(deliveredText(attachEffects.delivery, to: consumer) == "last words")
        #expect(h.registry.endOfStreamDelivered(self.id, by: consumer, now: h.now) == .rejected(.mismatchedAcknowledgement))
        effects = h.accepted(h.registry.delivered(self.id, byteCount: 10, by: consumer, now: h.now))
        #expect(effects.delivery == .endOfStream(consumer))
        effects = h.accepted(h.registry.endOfStreamDelivered(self.id, by: consumer, now: h.now))
        #expect(effects.removal?.reason == .drained)

        #expect(h.registry.consumerAttached(self.id, now: h.now) == .endOfStream)
        #expect(h.registry.produced(self.id, ByteBuffer(string: "x"), by: producer, now: h.now) == .rejected(.channelRemoved))
        h.advance(by: .seconds(31))
        #expect(h.registry.tick(now: h.now).isEmpty)
        #expect(h.registry.consumerAttached(self.id, now: h.now) == .notFound)
        #expect(h.registry.consumerAttached(.stdout("never-registered"), now: h.now) == .notFound)
    }

    @Test("4. no leaks: removal exactly when drained, or at linger expiry; counts return to zero")
    func noLeaks() {
        var h = RegistryHarness(options: IOChannelOptions(lingerTTL: .seconds(10)), tombstoneTTL: .seconds(5))
        let drained = IOChannelID.stdout("drained")
        let abandoned = IOChannelID.stdout("abandoned")
        h.register(drained)
        h.register(abandoned)

        let (p1, _) = h.attachProducer(drained)
        let (c1, _) = h.attachConsumer(drained)
        _ = h.produce(drained, "x", by: p1)
        _ = h.accepted(h.registry.producerClosed(drained, by: p1, now: h.now))
        #expect(h.registry.channelCount == 2, "in flight: not removed yet")
        _ = h.accepted(h.registry.delivered(drained, byteCount: 1, by: c1, now: h.now))
        #expect(h.registry.channelCount == 2, "end of stream not yet delivered")
        _ = h.accepted(h.registry.endOfStreamDelivered(drained, by: c1, now: h.now))
        #expect(h.registry.channelCount == 1)

        let (p2, _) = h.attachProducer(abandoned)
        _ = h.produce(abandoned, "nobody reads this", by: p2)
        _ = h.accepted(h.registry.producerClosed(abandoned, by: p2, now: h.now))
        h.advance(by: .seconds(9))
        #expect(h.registry.tick(now: h.now).isEmpty, "inside the linger TTL")
        h.advance(by: .seconds(1))
        let expiries = h.registry.tick(now: h.now)
        #expect(expiries.map(\.id) == [abandoned])
        #expect(expiries.first?.effects.removal == IOChannelRemoval(reason: .lingerExpired, droppedByteCount: 17))
        #expect(h.registry.channelCount == 0)
        h.advance(by: .seconds(5))
        _ = h.registry.tick(now: h.now)
        #expect(h.registry.tombstoneCount == 0)
    }

    @Test("5. bounded memory: pause at the high watermark, resume at the low, never drop; empty writes are not EOF")
    func boundedMemory() {
        var h = RegistryHarness(options: IOChannelOptions(highWatermark: 10, lowWatermark: 4, maxDeliveryBytes: 4))
        h.register(self.id)
        let (producer, _) = h.attachProducer(self.id)
        #expect(h.produce(self.id, "", by: producer).isEmpty, "a zero-length write changes nothing")
        #expect(h.registry.snapshot(of: self.id)?.phase == .producing)

        var effects = IOChannelEffects()
        for _ in 0..<3 {
            effects = h.produce(self.id, "abc", by: producer)
            #expect(effects.producerFlow == nil)
        }
        effects = h.produce(self.id, "abc", by: producer)  // 12 pending ≥ 10
        #expect(effects.producerFlow == .pause)
        #expect(h.registry.snapshot(of: self.id)?.queuedByteCount == 12, "nothing dropped")

        let (consumer, attachEffects) = h.attachConsumer(self.id)
        #expect(deliveredText(attachEffects.delivery, to: consumer) == "abc", "deliveries are at most maxDeliveryBytes, whole chunks")
        // Pending bytes are queued plus in flight: 9, then 6 (both above the low watermark of 4), then 3.
        for expected: ProducerFlowSignal? in [nil, nil, .resume] {
            effects = h.accepted(h.registry.delivered(self.id, byteCount: 3, by: consumer, now: h.now))
            #expect(effects.producerFlow == expected)
        }
        #expect(h.registry.snapshot(of: self.id)?.producerPaused == false)
    }

    @Test("6. stdin: partial writes keep leftovers; EOF only after buffered bytes are written; stdin_once")
    func stdinSemantics() {
        var h = RegistryHarness()
        let stdin = IOChannelID.stdin("exec1")
        h.register(stdin)
        // The process writer is the consumer; the client is the producer.
        let (writer, _) = h.attachConsumer(stdin)
        let (client, _) = h.attachProducer(stdin)
        #expect(deliveredText(h.produce(stdin, "echo hi\n", by: client).delivery, to: writer) == "echo hi\n")
        _ = h.accepted(h.registry.producerClosed(stdin, by: client, now: h.now))  // client EOF while bytes are out

        // The pipe took 5 bytes; the rest is delivered again, then EOF.
        var effects = h.accepted(h.registry.delivered(stdin, byteCount: 5, by: writer, now: h.now))
        #expect(deliveredText(effects.delivery, to: writer) == "hi\n")
        effects = h.accepted(h.registry.delivered(stdin, byteCount: 3, by: writer, now: h.now))
        #expect(effects.delivery == .endOfStream(writer))

        // Without stdin_once an attach ending is a detach: the container's stdin stays open for the next.
        let containerStdin = IOChannelID.stdin("ctr")
        h.register(containerStdin)
        let (containerWriter, _) = h.attachConsumer(containerStdin)
        let (firstAttach, _) = h.attachProducer(containerStdin)
        _ = h.produce(containerStdin, "a", by: firstAttach)
        _ = h.accepted(h.registry.producerDetached(containerStdin, by: firstAttach, now: h.now))
        #expect(h.registry.snapshot(of: containerStdin)?.phase == .awaitingProducer)
        let (secondAttach, _) = h.attachProducer(containerStdin)
        _ = h.produce(containerStdin, "b", by: secondAttach)
        effects = h.accepted(h.registry.delivered(containerStdin, byteCount: 1, by: containerWriter, now: h.now))
        #expect(deliveredText(effects.delivery, to: containerWriter) == "b")
    }
}
