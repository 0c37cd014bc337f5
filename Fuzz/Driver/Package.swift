// swift-tools-version:6.1
//
// The libFuzzer driver: one executable whose target is chosen by EXECSTREAM_FUZZ_TARGET. A
// package of its own because it has no `main` (libFuzzer brings one) and must be built with
// `-sanitize=fuzzer -parse-as-library`, which the main package's executables cannot be.
// `make fuzz` builds it and runs every target; see Fuzz/README.md.

import PackageDescription

let package = Package(
    name: "ExecStreamFuzzDriver",
    dependencies: [
        .package(name: "ExecStream", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "execstream-fuzz",
            dependencies: [.product(name: "ExecStreamFuzzTargets", package: "ExecStream")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
