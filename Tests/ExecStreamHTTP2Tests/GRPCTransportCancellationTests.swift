import ExecStreamHTTP2
import GRPCCore
import NIOCore
import Testing

/// Raw bytes in and out: no protobuf needed to test the transport.
private struct RawBytesCoder: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes {
        Bytes(message)
    }

    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}

/// `test.Waiting/Wait`: sends one message, then waits until its RPC is cancelled, and reports both.
private struct WaitingService: RegistrableRPCService {
    let events: AsyncStream<String>.Continuation

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let events = self.events
        router.registerHandler(
            forMethod: MethodDescriptor(fullyQualifiedService: "test.Waiting", method: "Wait"),
            deserializer: RawBytesCoder(),
            serializer: RawBytesCoder()
        ) { _, context in
            StreamingServerResponse(of: [UInt8].self) { writer in
                events.yield("started")
                try await writer.write([42])
                try? await context.cancellation.cancelled
                events.yield("cancelled")
                return [:]
            }
        }
    }
}

@Suite("gRPC transport: cancellation reaches the handler", .timeLimit(.minutes(1)))
struct GRPCTransportCancellationTests {
    /// Starts a gRPC server on the transport and one `Wait` call through the harness; returns once
    /// the handler has sent its first message.
    private func startWaitCall(headers: [(String, String)] = []) async throws
        -> (HTTP2Harness, Int32, AsyncStream<String>.AsyncIterator, GRPCServer<GRPCHTTP2ServerTransport>, Task<Void, any Error>)
    {
        let (events, eventsContinuation) = AsyncStream.makeStream(of: String.self)
        var iterator = events.makeAsyncIterator()
        let transport = GRPCHTTP2ServerTransport()
        let server = GRPCServer(transport: transport, services: [WaitingService(events: eventsContinuation)])
        let serving = Task { try await server.serve() }
        let harness = try await HTTP2Harness()
        let id = harness.client.request(
            method: "POST",
            path: "/test.Waiting/Wait",
            headers: [("content-type", "application/grpc"), ("te", "trailers")] + headers,
            body: [0, 0, 0, 0, 0]
        )
        try await harness.exchange()
        transport.accept(await harness.nextStream())
        #expect(await iterator.next() == "started")
        while harness.client.streams[id]?.body.count != 6 {
            try await harness.exchange()
            await Task.yield()
        }
        #expect(harness.client.streams[id]?.body == [0, 0, 0, 0, 1, 42])
        return (harness, id, iterator, server, serving)
    }

    @Test("RST_STREAM from the client cancels the RPC's handler")
    func resetCancels() async throws {
        var (harness, id, events, server, serving) = try await self.startWaitCall()
        harness.client.resetStream(id, code: 0x8)
        try await harness.exchange()
        #expect(await events.next() == "cancelled")
        server.beginGracefulShutdown()
        try await serving.value
    }

    @Test("grpc-timeout ends the RPC with DEADLINE_EXCEEDED and cancels its handler")
    func deadlineCancels() async throws {
        var (harness, id, events, server, serving) = try await self.startWaitCall(headers: [("grpc-timeout", "500m")])
        try await harness.advanceTime(by: .milliseconds(400))
        #expect(harness.client.streams[id]?.ended != true, "not before the deadline")
        try await harness.advanceTime(by: .milliseconds(200))
        #expect(await events.next() == "cancelled")
        while harness.client.streams[id]?.ended != true {
            try await harness.exchange()
            await Task.yield()
        }
        #expect(harness.client.streams[id]?.trailers.first { $0.0 == "grpc-status" }?.1 == "4")
        server.beginGracefulShutdown()
        try await serving.value
    }
}
