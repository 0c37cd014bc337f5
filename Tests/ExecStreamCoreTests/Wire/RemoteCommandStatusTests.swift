import ExecStreamCore
import Foundation
import Testing

@Suite("Remote command status")
struct RemoteCommandStatusTests {
    @Test("success is metav1.Status with only metadata and status")
    func success() {
        #expect(String(decoding: RemoteCommandStatus.json(for: .exited(code: 0)), as: UTF8.self) == #"{"metadata":{},"status":"Success"}"#)
        #expect(RemoteCommandStatus.plainText(for: .exited(code: 0)).isEmpty)
    }

    @Test("a non-zero exit carries the ExitCode cause first, its type serialised as reason", arguments: [1, 42, 128 + 9, 255] as [UInt8])
    func nonZeroExit(code: UInt8) throws {
        let json = String(decoding: RemoteCommandStatus.json(for: .exited(code: code)), as: UTF8.self)
        #expect(json == """
            {"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status \(code)",\
            "reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"\(code)"}]}}
            """)
        // As Python's client reads it: causes[0].message parses as the exit code.
        let object = try #require(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let causes = try #require((object["details"] as? [String: Any])?["causes"] as? [[String: Any]])
        #expect(causes.first?["reason"] as? String == "ExitCode")
        #expect((causes.first?["message"] as? String).flatMap(UInt8.init) == code)
        #expect(String(decoding: RemoteCommandStatus.plainText(for: .exited(code: code)), as: UTF8.self)
            == "command terminated with non-zero exit code: exit status \(code)")
    }

    @Test("an internal error is reason InternalError with code 500, escaped as Go escapes")
    func internalError() {
        let json = String(decoding: RemoteCommandStatus.json(for: .internalError(message: "exec <x> & \"q\"\n\u{1}\u{8}\u{2028}")), as: UTF8.self)
        let escaped = #"exec \u003cx\u003e \u0026 \"q\"\n\u0001\b\u2028"#
        #expect(json == """
            {"metadata":{},"status":"Failure","message":"Internal error occurred: \(escaped)","reason":"InternalError",\
            "details":{"causes":[{"message":"\(escaped)"}]},"code":500}
            """)
        #expect(String(decoding: RemoteCommandStatus.plainText(for: .internalError(message: "no such container")), as: UTF8.self)
            == "Internal error occurred: no such container")
    }

    @Test("a command that could not start is an internal error whose first cause is the shell's exit code")
    func notStarted() {
        let outcome = RemoteCommandOutcome.notStarted(exitCode: 127, message: "exec: \"nope\": executable file not found in $PATH")
        #expect(String(decoding: RemoteCommandStatus.json(for: outcome), as: UTF8.self) == #"""
            {"metadata":{},"status":"Failure","message":"Internal error occurred: exec: \"nope\": executable file not found in $PATH",\#
            "reason":"InternalError","details":{"causes":[{"reason":"ExitCode","message":"127"},\#
            {"message":"exec: \"nope\": executable file not found in $PATH"}]},"code":500}
            """#)
        #expect(String(decoding: RemoteCommandStatus.plainText(for: outcome), as: UTF8.self)
            == "Internal error occurred: exec: \"nope\": executable file not found in $PATH")
    }

    @Test("a preempted attach is reason Conflict with code 409, and its message as plain text")
    func preempted() {
        let outcome = RemoteCommandOutcome.preempted(message: "preempted: a newer attach to container \"sh\" took its stdout")
        #expect(String(decoding: RemoteCommandStatus.json(for: outcome), as: UTF8.self) == """
            {"metadata":{},"status":"Failure","message":"preempted: a newer attach to container \\"sh\\" took its stdout",\
            "reason":"Conflict","code":409}
            """)
        #expect(String(decoding: RemoteCommandStatus.plainText(for: outcome), as: UTF8.self)
            == "preempted: a newer attach to container \"sh\" took its stdout")
    }
}
