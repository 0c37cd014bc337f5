import ExecStreamServer
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

@Suite("Server lifecycle")
struct ServerLifecycleTests {
    @Test("a graceful shutdown that arrives as soon as the listeners are bound ends cleanly")
    func shutdownRightAfterBinding() async throws {
        // onListening runs just before the gRPC server starts serving: the narrowest window.
        try await testGracefulShutdown { trigger in
            let server = ExecStreamServer(
                configuration: ServerConfiguration(listenAddresses: [.tcp(host: "127.0.0.1", port: 0)]),
                logger: Logger(label: "test")
            ) { _ in
                trigger.triggerGracefulShutdown()
            }
            try await server.run()
        }
    }
}
