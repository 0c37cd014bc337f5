/// How a remote command ended, as the error channel reports it (PROTOCOLS.md §3d).
public enum RemoteCommandOutcome: Hashable, Sendable {
    /// The process exited with this code (0–255; death by signal n is 128+n). 0 is success.
    case exited(code: UInt8)
    /// The command could not start: `exitCode` is what a shell reports for it (127: no such
    /// command, 126: it cannot run). The text reaches the client.
    case notStarted(exitCode: UInt8, message: String)
    /// The command could not run, or failed inside the server. The text reaches the client.
    case internalError(message: String)
    /// A newer attach took this session's streams (newest attach wins). The text reaches the client.
    case preempted(message: String)
}

/// The status written on the error channel: Go's `json.Marshal` of `metav1.Status` for v4 and
/// later, plain text for v1–v3 and the unnamed/base64 WebSocket protocols. Byte-exact with what
/// the kubelet streaming library writes, so client-go and the Python client parse it as they parse
/// the kubelet's.
public enum RemoteCommandStatus {
    /// The `message` of the status, also the whole plain-text error. Empty for success.
    public static func message(for outcome: RemoteCommandOutcome) -> String {
        switch outcome {
        case .exited(0):
            return ""
        case .exited(let code):
            return "command terminated with non-zero exit code: exit status \(code)"
        case .notStarted(_, let message), .internalError(let message):
            return "Internal error occurred: \(message)"
        case .preempted(let message):
            return message
        }
    }

    /// The v4+ JSON status. Fields in Go's order (metadata, status, message, reason, details,
    /// code); the ExitCode cause is first, its type serialised as `reason`; empty fields omitted.
    public static func json(for outcome: RemoteCommandOutcome) -> [UInt8] {
        var json = JSONWriter()
        json.raw(#"{"metadata":{},"status":"#)
        switch outcome {
        case .exited(0):
            json.string("Success")
            json.raw("}")
        case .exited(let code):
            json.string("Failure")
            json.raw(#","message":"#)
            json.string(self.message(for: outcome))
            json.raw(#","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"#)
            json.string(String(code))
            json.raw("}]}}")
        case .notStarted(let code, let cause):
            // As the kubelet reports any failed exec (so client-go and kubectl read it alike),
            // with the shell's exit code as a first cause: the Python client and ours take it.
            json.string("Failure")
            json.raw(#","message":"#)
            json.string(self.message(for: outcome))
            json.raw(#","reason":"InternalError","details":{"causes":[{"reason":"ExitCode","message":"#)
            json.string(String(code))
            json.raw(#"},{"message":"#)
            json.string(cause)
            json.raw(#"}]},"code":500}"#)
        case .internalError(let cause):
            json.string("Failure")
            json.raw(#","message":"#)
            json.string(self.message(for: outcome))
            json.raw(#","reason":"InternalError","details":{"causes":[{"message":"#)
            json.string(cause)
            json.raw(#"}]},"code":500}"#)
        case .preempted:
            json.string("Failure")
            json.raw(#","message":"#)
            json.string(self.message(for: outcome))
            json.raw(#","reason":"Conflict","code":409}"#)
        }
        return json.bytes
    }

    /// The v1–v3 plain-text error: nothing for success, else the status message.
    public static func plainText(for outcome: RemoteCommandOutcome) -> [UInt8] {
        Array(self.message(for: outcome).utf8)
    }
}

/// Writes JSON the way Go's `encoding/json` does by default, so our bytes match the kubelet's.
/// The one JSON string escaper of the package (statuses, port-forward errors, log lines).
package struct JSONWriter {
    package private(set) var bytes: [UInt8] = []

    package init() {}

    /// `text` as a JSON string, quotes included.
    package static func quoted(_ text: String) -> String {
        var writer = JSONWriter()
        writer.string(text)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    package mutating func raw(_ text: String) {
        self.bytes += text.utf8
    }

    /// A JSON string with Go's escaping: `\"` `\\` `\n` `\r` `\t` `\b` `\f` (Go 1.22+), other
    /// control characters as `\u00XX`, and `<` `>` `&` U+2028 U+2029 as `\uXXXX` (HTML-safe).
    package mutating func string(_ text: String) {
        self.bytes.append(UInt8(ascii: "\""))
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": self.raw(#"\""#)
            case "\\": self.raw(#"\\"#)
            case "\n": self.raw(#"\n"#)
            case "\r": self.raw(#"\r"#)
            case "\t": self.raw(#"\t"#)
            case "\u{08}": self.raw(#"\b"#)
            case "\u{0C}": self.raw(#"\f"#)
            case "<", ">", "&", "\u{2028}", "\u{2029}":
                self.unicodeEscape(scalar.value)
            case _ where scalar.value < 0x20:
                self.unicodeEscape(scalar.value)
            default:
                self.bytes += String(scalar).utf8
            }
        }
        self.bytes.append(UInt8(ascii: "\""))
    }

    private mutating func unicodeEscape(_ value: UInt32) {
        let hex = String(value, radix: 16)
        self.raw("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
    }
}
