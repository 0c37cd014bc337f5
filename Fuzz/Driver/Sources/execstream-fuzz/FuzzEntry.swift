import ExecStreamFuzzTargets
import Foundation

// libFuzzer's own driver, linked in by `-sanitize=fuzzer`. SwiftPM names this executable's entry
// point `execstream_fuzz_main` (and aliases `main` to it), so the entry point below starts libFuzzer
// instead of libFuzzer's `main` doing so.
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// The target named by EXECSTREAM_FUZZ_TARGET, chosen once before libFuzzer starts.
nonisolated(unsafe) private var selectedTarget: FuzzTarget?

@_cdecl("execstream_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    let name = ProcessInfo.processInfo.environment["EXECSTREAM_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        FileHandle.standardError.write(Data("EXECSTREAM_FUZZ_TARGET must be one of: \(names)\n".utf8))
        return 2
    }
    selectedTarget = target
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in
        selectedTarget!.run(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
}
