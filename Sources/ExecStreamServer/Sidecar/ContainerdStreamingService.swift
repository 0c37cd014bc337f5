import ExecStreamCore
import ExecStreamRemoteCommand
import ExecStreamProtos
import Foundation
import GRPCCore
import Logging
import NIOCore
import SwiftProtobuf
import Synchronization

/// containerd's `containerd.services.streaming.v1.Streaming/Stream` (PROTOCOLS.md §8): the IO
/// path of sandbox runtimes, one gRPC stream per channel id.
///
/// The first client message is `StreamInit{id}`. The server attaches to the channel, then acks
/// with `Empty` (attach first, then ack, so no byte can be missed between the two).
/// - `<id>-stdout|stderr`: the server sends `Data` within the credit the client grants with
///   `WindowUpdate`. A newer stream for the id preempts this one: it stops at once, ends with
///   ABORTED, and the newer one receives every byte this one did not send. After the last byte
///   the stream ends with OK (EOF); an id whose channel has already drained ends so at once. The
///   client's CloseSend detaches it (OK, nothing lost).
/// - `<id>-stdin`: the client sends `Data` within the credit the server grants; the server grants
///   more as the process takes the bytes, and none while the channel is full. CloseSend is EOF,
///   and the process's stdin closes after the last byte.
/// - An unknown id is NOT_FOUND; a bad one INVALID_ARGUMENT.
///
/// A byte counts as delivered once gRPC has taken it for the wire. Preemption, CloseSend and a
/// cancel with no credit outstanding therefore lose nothing; a connection that drops while the
/// client holds unused credit loses what was on the wire to it, which the credit bounds.
final class ContainerdStreamingService: Containerd_Services_Streaming_V1_Streaming.SimpleServiceProtocol, Sendable {
    /// The most bytes of one `Data` message we send.
    static let maxDataMessageBytes = 64 << 10
    /// The credit a stdin stream starts with; more is granted as the process takes bytes.
    static let stdinWindowBytes: Int32 = 256 << 10

    private let registry: ChannelRegistry
    private let observer: any SessionObserver
    private let logger: Logger

    /// Each stream is a session for `observer` (metrics, the audit log), of kind
    /// `containerd_stream`.
    init(registry: ChannelRegistry, observer: any SessionObserver = NoSessionObserver(), logger: Logger) {
        self.registry = registry
        self.observer = observer
        self.logger = logger
    }

    func stream(
        request: RPCAsyncSequence<Google_Protobuf_Any, any Error>,
        response: RPCWriter<Google_Protobuf_Any>,
        context: ServerContext
    ) async throws {
        let (events, continuation) = AsyncStream<StreamEvent>.makeStream()
        // Every client message and the end of the client's side, as events beside the registry's.
        let reader = Task {
            do {
                for try await message in request {
                    continuation.yield(.message(message))
                }
                continuation.yield(.clientClosedSend)
            } catch {
                continuation.yield(.clientFailed)
            }
        }
        defer {
            reader.cancel()
            continuation.finish()
        }
        var iterator = events.makeAsyncIterator()
        guard case .message(let first)? = await iterator.next() else {
            throw RPCError(code: .invalidArgument, message: "the stream ended before StreamInit")
        }
        guard let initMessage = try? StreamMessage.decode(first, as: Containerd_Services_Streaming_V1_StreamInit.self) else {
            throw RPCError(code: .invalidArgument, message: "the first message must be containerd.services.streaming.v1.StreamInit, not \(first.typeURL)")
        }
        guard let id = IOChannelID(parsing: initMessage.id) else {
            throw RPCError(code: .invalidArgument, message: "stream id \"\(initMessage.id)\" must end in -stdin, -stdout or -stderr")
        }
        let observed = ObservedSession(kind: .containerdStream, transport: "grpc", containerID: "\(id)", command: nil, peer: AuditLog.peer(context))
        let (observer, started) = (self.observer, ContinuousClock.now)
        let bytes = Atomic<Int>(0)
        let transferred: @Sendable (Int) -> Void = { byteCount in
            bytes.add(byteCount, ordering: .relaxed)
            observer.transferred(byteCount, of: id.stream, in: observed)
        }
        observer.sessionStarted(observed)
        var outcome = ObservedSessionEnd.Outcome.failed("error")
        defer {
            let end = ObservedSessionEnd(outcome: outcome, bytes: [id.stream: bytes.load(ordering: .relaxed)], duration: .now - started)
            observer.sessionEnded(observed, end)
        }
        do {
            switch id.stream {
            case .stdout, .stderr:
                let session = OutputStreamSession(id: id, registry: self.registry, events: continuation, transferred: transferred)
                try await session.run(events: &iterator, response: response)
            case .stdin:
                let session = InputStreamSession(id: id, registry: self.registry, events: continuation, transferred: transferred)
                try await session.run(events: &iterator, response: response)
            }
            outcome = .closed
        } catch let error as RPCError where error.code == .aborted {
            outcome = .failed("preempted")
            throw error
        }
    }
}

/// What a stream's loop reacts to: client messages and the registry's calls, in one queue.
enum StreamEvent: Sendable {
    /// A message from the client.
    case message(Google_Protobuf_Any)
    /// The client half-closed (CloseSend).
    case clientClosedSend
    /// The client's side failed (reset, connection lost, malformed message).
    case clientFailed
    /// Output: bytes to send.
    case deliver([ByteBuffer], byteCount: Int, ConsumerGeneration)
    /// Output: every byte has been sent; end the stream.
    case endOfStream(ConsumerGeneration)
    /// Output: our part ended without an end of stream of our own.
    case consumerEnded(IOChannelConsumerEnd)
    /// Input: the channel has room again.
    case resumed
    /// Input: the registry stopped our producer.
    case producerStopped
}

/// `Any` in containerd's form: the bare full message name as type URL.
enum StreamMessage {
    static func encode(_ message: some SwiftProtobuf.Message) throws -> Google_Protobuf_Any {
        var any = Google_Protobuf_Any()
        any.typeURL = type(of: message).protoMessageName
        any.value = try message.serializedBytes()
        return any
    }

    /// The message if `any` holds an `M` (a bare name, or one after a `/` prefix); nil otherwise.
    static func decode<M: SwiftProtobuf.Message>(_ any: Google_Protobuf_Any, as type: M.Type) throws -> M? {
        let name = any.typeURL.split(separator: "/").last.map(String.init) ?? ""
        guard name == M.protoMessageName else { return nil }
        return try M(serializedBytes: any.value)
    }

    static let empty = try! encode(Google_Protobuf_Empty())

    /// A stream whose channel takes no attach: EOF (the ack, then OK) if the channel has ended or
    /// is ending, NOT_FOUND if there is no such channel.
    static func endAtOnce(_ id: IOChannelID, registry: ChannelRegistry, response: RPCWriter<Google_Protobuf_Any>) async throws {
        switch registry.presence(of: id) {
        case .ended, .live:
            try await response.write(Self.empty)
        case .unknown:
            throw RPCError(code: .notFound, message: "no channel \"\(id)\"")
        }
    }
}

/// One `-stdout`/`-stderr` stream: a registry consumer that sends within the client's credit.
private final class OutputStreamSession {
    private let id: IOChannelID
    private let registry: ChannelRegistry
    private let consumer: StreamConsumer
    private var sender = CreditedSender()
    private var generation: ConsumerGeneration?
    private let transferred: (Int) -> Void

    init(id: IOChannelID, registry: ChannelRegistry, events: AsyncStream<StreamEvent>.Continuation, transferred: @escaping (Int) -> Void) {
        self.id = id
        self.registry = registry
        self.consumer = StreamConsumer(events: events)
        self.transferred = transferred
    }

    func run(events: inout AsyncStream<StreamEvent>.Iterator, response: RPCWriter<Google_Protobuf_Any>) async throws {
        guard let generation = self.registry.attachConsumer(self.id, self.consumer) else {
            // Drained already, or unknown.
            return try await StreamMessage.endAtOnce(self.id, registry: self.registry, response: response)
        }
        self.generation = generation
        do {
            try await response.write(StreamMessage.empty)
            try await self.loop(events: &events, response: response)
        } catch {
            self.leave()
            throw error
        }
    }

    private func loop(events: inout AsyncStream<StreamEvent>.Iterator, response: RPCWriter<Google_Protobuf_Any>) async throws {
        while let event = await events.next() {
            switch event {
            case .message(let message):
                guard let update = try? StreamMessage.decode(message, as: Containerd_Types_Transfer_WindowUpdate.self) else {
                    throw RPCError(code: .invalidArgument, message: "an output stream takes only containerd.types.transfer.WindowUpdate, not \(message.typeURL)")
                }
                do {
                    try self.sender.grant(update.update)
                } catch {
                    throw RPCError(code: .invalidArgument, message: "WindowUpdate of \(update.update): credit must be positive")
                }
            case .deliver(let chunks, let byteCount, _):
                self.sender.take(chunks, byteCount: byteCount)
            case .endOfStream(let generation):
                self.registry.endOfStreamDelivered(self.id, by: generation)
                self.generation = nil
                return
            case .consumerEnded(.endOfStream):
                self.generation = nil
                return
            case .consumerEnded(.preempted):
                self.leave()
                throw RPCError(ExecStreamError(code: .preempted, message: "preempted: a newer stream for \"\(self.id)\" took over"))
            case .clientClosedSend, .clientFailed:
                self.leave()
                return
            case .resumed, .producerStopped:
                continue
            }
            try await self.sendWhatCreditAllows(response)
        }
        // The RPC was cancelled.
        self.leave()
    }

    private func sendWhatCreditAllows(_ response: RPCWriter<Google_Protobuf_Any>) async throws {
        while let bytes = self.sender.nextMessage(maxBytes: ContainerdStreamingService.maxDataMessageBytes) {
            var data = Containerd_Types_Transfer_Data()
            data.data = Data(bytes.readableBytesView)
            try await response.write(try StreamMessage.encode(data))
            self.transferred(bytes.readableBytes)
        }
        if let byteCount = self.sender.completeDelivery(), let generation = self.generation {
            self.registry.delivered(self.id, byteCount: byteCount, by: generation)
        }
    }

    /// Our part ends before end of stream: what was not sent goes back for the next consumer.
    private func leave() {
        guard let generation = self.generation else { return }
        self.generation = nil
        if let sent = self.sender.abandonDelivery() {
            self.registry.deliveryFailed(self.id, by: generation, deliveredByteCount: sent)
        } else {
            self.registry.consumerDetached(self.id, by: generation)
        }
    }
}

/// The registry's side of an output stream: its calls become events of the stream's loop.
private final class StreamConsumer: IOChannelConsumer {
    private let events: AsyncStream<StreamEvent>.Continuation

    init(events: AsyncStream<StreamEvent>.Continuation) {
        self.events = events
    }

    func deliver(_ chunks: [ByteBuffer], byteCount: Int, streamOffset: Int, channel: IOChannelID, generation: ConsumerGeneration) {
        self.events.yield(.deliver(chunks, byteCount: byteCount, generation))
    }

    func deliverEndOfStream(channel: IOChannelID, generation: ConsumerGeneration) {
        self.events.yield(.endOfStream(generation))
    }

    func ended(channel: IOChannelID, generation: ConsumerGeneration, reason: IOChannelConsumerEnd) {
        self.events.yield(.consumerEnded(reason))
    }
}

/// One `-stdin` stream: a registry producer fed by the client's `Data`, granting credit as the
/// channel takes bytes.
private final class InputStreamSession {
    private let id: IOChannelID
    private let registry: ChannelRegistry
    private let producer: ClientInputProducer
    private let events: AsyncStream<StreamEvent>.Continuation
    /// The client's credit.
    private var credit = InputCreditLedger(window: Int64(ContainerdStreamingService.stdinWindowBytes))
    private let transferred: (Int) -> Void

    init(id: IOChannelID, registry: ChannelRegistry, events: AsyncStream<StreamEvent>.Continuation, transferred: @escaping (Int) -> Void) {
        self.id = id
        self.registry = registry
        self.events = events
        self.transferred = transferred
        self.producer = ClientInputProducer(id: id, registry: registry, endOfInputClosesChannel: true)
    }

    func run(events: inout AsyncStream<StreamEvent>.Iterator, response: RPCWriter<Google_Protobuf_Any>) async throws {
        guard self.producer.attach() else {
            // The process's stdin is closed already, or unknown.
            return try await StreamMessage.endAtOnce(self.id, registry: self.registry, response: response)
        }
        let continuation = self.events
        self.producer.whenStopped { continuation.yield(.producerStopped) }
        do {
            try await response.write(StreamMessage.empty)
            try await self.grant(self.credit.start(), response)
            try await self.loop(events: &events, response: response)
        } catch {
            self.producer.detach()
            throw error
        }
    }

    private func loop(events: inout AsyncStream<StreamEvent>.Iterator, response: RPCWriter<Google_Protobuf_Any>) async throws {
        while let event = await events.next() {
            switch event {
            case .message(let message):
                guard let data = try? StreamMessage.decode(message, as: Containerd_Types_Transfer_Data.self) else {
                    throw RPCError(code: .invalidArgument, message: "a stdin stream takes only containerd.types.transfer.Data, not \(message.typeURL)")
                }
                let byteCount = Int64(data.data.count)
                do {
                    try self.credit.received(byteCount)
                } catch {
                    throw RPCError(code: .resourceExhausted, message: "\(error.byteCount) bytes of Data with \(error.credit) bytes of credit")
                }
                self.producer.produce(ByteBuffer(bytes: data.data))
                self.transferred(data.data.count)
                try await self.carryOut(self.credit.taken(byteCount, channelPaused: self.producer.isPaused), response)
            case .resumed:
                guard !self.producer.isDone else { continue }
                try await self.carryOut(self.credit.resumed(channelPaused: self.producer.isPaused), response)
            case .clientClosedSend:
                self.producer.close()
                return
            case .clientFailed:
                self.producer.detach()
                return
            case .producerStopped:
                if let current = self.registry.snapshot(of: self.id)?.producer, current != self.producerGeneration {
                    throw RPCError(ExecStreamError(code: .preempted, message: "preempted: a newer stream for \"\(self.id)\" took over"))
                }
                // The process's stdin closed: EOF.
                return
            case .deliver, .endOfStream, .consumerEnded:
                continue
            }
        }
        self.producer.detach()
    }

    private var producerGeneration: ProducerGeneration? { self.producer.generation }

    private func carryOut(_ action: InputCreditLedger.Action, _ response: RPCWriter<Google_Protobuf_Any>) async throws {
        switch action {
        case .none:
            break
        case .grant(let byteCount):
            try await self.grant(byteCount, response)
        case .awaitResume:
            let continuation = self.events
            self.producer.whenResumed { continuation.yield(.resumed) }
        }
    }

    /// Sends `WindowUpdate`s for `byteCount` (the ledger has counted them as outstanding).
    private func grant(_ byteCount: Int64, _ response: RPCWriter<Google_Protobuf_Any>) async throws {
        var remaining = byteCount
        while remaining > 0 {
            let update = Int32(min(remaining, Int64(Int32.max)))
            var message = Containerd_Types_Transfer_WindowUpdate()
            message.update = update
            try await response.write(try StreamMessage.encode(message))
            remaining -= Int64(update)
        }
    }
}
