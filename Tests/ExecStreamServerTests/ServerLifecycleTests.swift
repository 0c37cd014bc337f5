import ExecStreamServer
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

@Suite("Server lifecycle")
struct ServerLifecycleTests {
    static let quietLogger: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return logger
    }()

    @Test("a graceful shutdown that arrives as soon as the listeners are bound ends cleanly")
    func shutdownRightAfterBinding() async throws {
        // onListening runs just before the gRPC server starts serving: the narrowest window.
        try await testGracefulShutdown { trigger in
            let server = ExecStreamServer(
                configuration: ServerConfiguration(listenAddresses: [.tcp(host: "127.0.0.1", port: 0)]),
                logger: Self.quietLogger
            ) { _ in
                trigger.triggerGracefulShutdown()
            }
            try await server.run()
        }
    }

    @Test("a namespaces container without a main process is refused at start, in one line")
    func namespacesNeedAMainProcess() async throws {
        let server = ExecStreamServer(
            configuration: ServerConfiguration(
                listenAddresses: [.tcp(host: "127.0.0.1", port: 0)],
                containers: [ContainerSpec(id: "box", isolation: .namespaces)]
            ),
            logger: Self.quietLogger
        )
        let error = await #expect(throws: ServerError.self) { try await server.run() }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message == "container \"box\": namespaces isolation needs a main process (its namespaces are the main process's)")
    }
}
