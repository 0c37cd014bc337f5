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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // nghttp2, Debian's libnghttp2 1.52: the HTTP/2 engine.
        .systemLibrary(
            name: "CNghttp2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),

        // Every state machine and pure codec. No I/O: NIOCore is used for ByteBuffer only.
        .target(
            name: "ExecStreamCore",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),

        // The command-line tool: `execstream version` today; serve/exec/attach come with the server.
        .executableTarget(
            name: "execstream",
            dependencies: [
                "ExecStreamCore",
                "CNghttp2",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
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

        .testTarget(
            name: "CNghttp2Tests",
            dependencies: ["CNghttp2"],
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
