import ExecStreamFuzzTargets
import Foundation
import Testing

/// Every fuzz target over its committed seed corpus and over every input that once crashed it
/// (`Fuzz/Regressions/<target>/`). A regression's file name says what it found.
@Suite("Fuzz corpus and regressions replay")
struct FuzzReplayTests {
    private static let fuzzDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    private static func inputs(_ kind: String, _ target: FuzzTarget) -> [URL] {
        let folder = self.fuzzDirectory.appendingPathComponent(kind).appendingPathComponent(target.rawValue)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.sorted().filter { !$0.hasPrefix(".") }.map { folder.appendingPathComponent($0) }
    }

    @Test("every target has a seed corpus", arguments: FuzzTarget.allCases)
    func seedCorpusExists(target: FuzzTarget) {
        #expect(Self.inputs("Corpus", target).count >= 2, "Fuzz/Corpus/\(target.rawValue) needs seeds")
    }

    @Test("seeds and past crashes run cleanly", arguments: FuzzTarget.allCases)
    func replay(target: FuzzTarget) throws {
        for file in Self.inputs("Corpus", target) + Self.inputs("Regressions", target) {
            target.run([UInt8](try Data(contentsOf: file)))
        }
    }
}
