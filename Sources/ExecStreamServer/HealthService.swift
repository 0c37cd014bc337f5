import ExecStreamProtos
import GRPCCore
import Synchronization

/// `grpc.health.v1.Health`: the server itself (service "") and every service it serves.
/// Check answers NOT_FOUND for an unknown service, as the standard says; Watch sends the current
/// status at once (SERVICE_UNKNOWN for an unknown service) and then every change, until the client
/// goes away. A graceful shutdown turns every status to NOT_SERVING.
final class HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol, Sendable {
    typealias ServingStatus = Grpc_Health_V1_HealthCheckResponse.ServingStatus

    private struct State {
        var statuses: [String: ServingStatus]
        var watchers: [UInt64: (service: String, continuation: AsyncStream<ServingStatus>.Continuation)] = [:]
        var nextWatcher: UInt64 = 0
    }

    private let state: Mutex<State>

    init(services: [String]) {
        var statuses = ["": ServingStatus.serving]
        for service in services {
            statuses[service] = .serving
        }
        self.state = Mutex(State(statuses: statuses))
    }

    /// Sets the status of every known service.
    func setAll(_ status: ServingStatus) {
        let watchers = self.state.withLock { state in
            for service in state.statuses.keys {
                state.statuses[service] = status
            }
            return Array(state.watchers.values)
        }
        for watcher in watchers {
            watcher.continuation.yield(status)
        }
    }

    func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        guard let status = self.state.withLock({ $0.statuses[request.service] }) else {
            throw RPCError(code: .notFound, message: "unknown service '\(request.service)'")
        }
        return .with { $0.status = status }
    }

    func list(request: Grpc_Health_V1_HealthListRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthListResponse {
        let statuses = self.state.withLock { $0.statuses }
        return .with { response in
            for (service, status) in statuses {
                response.statuses[service] = .with { $0.status = status }
            }
        }
    }

    func watch(
        request: Grpc_Health_V1_HealthCheckRequest,
        response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
        context: ServerContext
    ) async throws {
        let (updates, continuation) = AsyncStream.makeStream(of: ServingStatus.self, bufferingPolicy: .bufferingNewest(1))
        let (id, current) = self.state.withLock { state in
            state.nextWatcher += 1
            state.watchers[state.nextWatcher] = (request.service, continuation)
            return (state.nextWatcher, state.statuses[request.service] ?? .serviceUnknown)
        }
        defer {
            _ = self.state.withLock { $0.watchers.removeValue(forKey: id) }
        }
        try await response.write(.with { $0.status = current })
        var last = current
        try await withRPCCancellationHandler {
            for await status in updates where status != last {
                last = status
                try await response.write(.with { $0.status = status })
            }
        } onCancelRPC: {
            continuation.finish()
        }
    }
}
