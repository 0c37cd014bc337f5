// swift-tools-version:6.1
//
// ExecStream: an exec streaming server for container sandboxes.
// Targets follow ../shared/design/ARCHITECTURE.md ("Targets"). Later issues add the transport,
// process and server targets; every target listed here builds and has a test target.

import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "ExecStream",
    products: [
        .executable(name: "execstream", targets: ["execstream"]),
        .library(name: "ExecStreamCore", targets: ["ExecStreamCore"]),
        // For Fuzz/Driver, the libFuzzer executable (a package of its own: see `make fuzz`).
        .library(name: "ExecStreamFuzzTargets", targets: ["ExecStreamFuzzTargets"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // nghttp2, Debian's libnghttp2 1.52: the HTTP/2 engine.
        .systemLibrary(
            name: "CNghttp2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),

        // zlib, for SPDY/3 header compression (one deflate and one inflate stream per connection).
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),

        // Thin C: pseudo-terminals, the spawn primitive (clone(CLONE_VM|CLONE_VFORK) with setsid,
        // setns, controlling tty, credentials, signal reset), pidfds.
        .target(name: "CExecSys"),

        // Every state machine and pure codec. No I/O: NIOCore is used for ByteBuffer only.
        .target(
            name: "ExecStreamCore",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),

        // HTTP/2 on nghttp2 under SwiftNIO, and the gRPC server transport on top of it.
        .target(
            name: "ExecStreamHTTP2",
            dependencies: [
                "CNghttp2",
                "ExecStreamCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ],
            swiftSettings: strictSettings
        ),

        // The client library: CRI calls and native exec/attach streams, for the CLI and tests.
        .target(
            name: "ExecStreamClient",
            dependencies: [
                "ExecStreamCore",
                "ExecStreamHTTP2",
                "ExecStreamProtos",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),

        // HTTP/1.1 on the same port: the protocol sniffer and the HTTP/1.1 stack.
        .target(
            name: "ExecStreamHTTP1",
            dependencies: [
                "ExecStreamCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),

        // Processes: spawn with pipes or a PTY, resize, signals, reaping on a dedicated thread.
        .target(
            name: "ExecStreamProcess",
            dependencies: ["CExecSys", "ExecStreamCore"],
            swiftSettings: strictSettings
        ),

        // The remote-command protocols, one folder each (Native, WebSocket, SPDY, PortForward), all
        // adapters of one session seam (Session: ExecSession, client events, the channel registry
        // and the process's stdio endpoints).
        .target(
            name: "ExecStreamRemoteCommand",
            dependencies: [
                "CZlib",
                "ExecStreamCore",
                "ExecStreamHTTP2",
                "ExecStreamProcess",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),

        // Assembly: listeners, routing, the streaming endpoints, gRPC services, lifecycle.
        .target(
            name: "ExecStreamServer",
            dependencies: [
                "CExecSys",
                "ExecStreamCore",
                "ExecStreamHTTP1",
                "ExecStreamHTTP2",
                "ExecStreamProcess",
                "ExecStreamRemoteCommand",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                "ExecStreamProtos",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings
        ),

        // Code generated from Protos/ by Protos/generate.sh (committed; public, so no strict imports).
        .target(
            name: "ExecStreamProtos",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Generated/README.md"],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),

        // The command-line tool: the server (`serve`) and, later, its clients.
        .executableTarget(
            name: "execstream",
            dependencies: [
                "ExecStreamCore",
                "ExecStreamClient",
                "ExecStreamServer",
                "CNghttp2",
                "CExecSys",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),

        // Every decoder of peer bytes as a fuzz target. Fuzz/Driver runs them under libFuzzer;
        // ExecStreamFuzzTargetsTests replays the seed corpus and past crashes in every test run.
        .target(
            name: "ExecStreamFuzzTargets",
            dependencies: [
                "ExecStreamClient",
                "ExecStreamCore",
                "ExecStreamHTTP1",
                "ExecStreamRemoteCommand",
                "ExecStreamServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "Fuzz/Targets",
            swiftSettings: strictSettings
        ),

        // `make bench`: figures printed from one run, never asserted.
        .executableTarget(
            name: "ExecStreamBenchmarks",
            dependencies: [
                "ExecStreamCore",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/ExecStreamBenchmarks",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "ExecLatency",
            dependencies: ["ExecStreamClient", "ExecStreamCore", "ExecStreamHTTP2", "ExecStreamProtos"],
            path: "Benchmarks/ExecLatency",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "StreamThroughput",
            dependencies: [
                "ExecStreamClient", "ExecStreamCore", "ExecStreamHTTP2", "ExecStreamProtos", "ExecStreamRemoteCommand",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/StreamThroughput",
            swiftSettings: strictSettings
        ),

        .testTarget(
            name: "CNghttp2Tests",
            dependencies: ["CNghttp2"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ExecStreamHTTP2Tests",
            dependencies: [
                "ExecStreamHTTP2",
                "CNghttp2",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ExecStreamHTTP1Tests",
            dependencies: [
                "ExecStreamCore",
                "ExecStreamHTTP1",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ExecStreamProtosTests",
            dependencies: [
                "ExecStreamProtos",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ExecStreamProcessTests",
            dependencies: ["ExecStreamProcess", "ExecStreamCore"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ExecStreamRemoteCommandTests",
            dependencies: [
                "ExecStreamRemoteCommand",
                "ExecStreamCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ExecStreamServerTests",
            dependencies: [
                "ExecStreamServer",
                "ExecStreamRemoteCommand",
                "ExecStreamClient",
                "ExecStreamCore",
                "ExecStreamHTTP2",
                "ExecStreamProtos",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ExecStreamFuzzTargetsTests",
            dependencies: ["ExecStreamFuzzTargets"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ExecStreamCoreTests",
            dependencies: [
                "ExecStreamCore",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
