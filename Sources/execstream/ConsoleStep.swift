import ExecStreamCore
import Foundation

/// One step of a console script, read from a JSON line (`execstream console`). A line that is
/// not a step is an `invalid_step` answer that says what is wrong with it, never a crash and
/// never a guess.
enum ConsoleStep {
    /// Type text; answer once the terminal has taken it.
    case send(String, timeout: Duration)
    /// Wait for a pattern and take the output up to it.
    case expect(ConsoleTranscript.Pattern, timeout: Duration)
    /// Run one line of shell between fences, typing `input` once it has started.
    case run(String, input: String?, timeout: Duration)

    /// A line that is not a step, and why.
    struct Invalid: Error {
        var message: String
    }

    /// The timeout of a step that names none.
    static let defaultTimeoutSeconds = 30.0
    /// The longest timeout a step may name (about 11.6 days).
    static let maxTimeoutSeconds = 1_000_000.0

    /// The step on `line`.
    static func parse(_ line: String) throws(Invalid) -> ConsoleStep {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw Invalid(message: "a step is one JSON object per line, not \(line.prefix(80))")
        }
        let actions = ["send", "expect", "run"].filter { object[$0] != nil }
        guard actions.count == 1, let action = actions.first else {
            throw Invalid(message: "a step has exactly one of \"send\", \"expect\" or \"run\"")
        }
        let known: Set<String> = Set(["send": ["timeout"], "expect": ["regex", "timeout"], "run": ["input", "timeout"]][action]! + [action])
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw Invalid(message: "a \"\(action)\" step has no \"\(unknown)\"")
        }
        let timeout = try Self.timeout(object["timeout"])
        let text = try Self.string(object[action], action)
        switch action {
        case "send":
            return .send(text, timeout: timeout)
        case "expect":
            let regex = try Self.bool(object["regex"], "regex")
            return .expect(regex ? .regularExpression(text) : .literal(text), timeout: timeout)
        default:
            let input = try object["input"].map { (value) throws(Invalid) in try Self.string(value, "input") }
            return .run(text, input: input, timeout: timeout)
        }
    }

    private static func string(_ value: Any?, _ key: String) throws(Invalid) -> String {
        guard let text = value as? String else { throw Invalid(message: "\"\(key)\" must be a string") }
        return text
    }

    private static func bool(_ value: Any?, _ key: String) throws(Invalid) -> Bool {
        guard let value else { return false }
        // JSON true and false only (Foundation would read 1 and 0 as booleans too).
        guard let number = value as? NSNumber, Self.isBoolean(number) else {
            throw Invalid(message: "\"\(key)\" must be true or false")
        }
        return number.boolValue
    }

    /// Whether JSONSerialization made `number` of a JSON `true` or `false` (its type is C's char).
    private static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }

    private static func timeout(_ value: Any?) throws(Invalid) -> Duration {
        guard let value else { return .seconds(Self.defaultTimeoutSeconds) }
        guard let number = value as? NSNumber, !Self.isBoolean(number),
            case let seconds = number.doubleValue, seconds.isFinite, seconds >= 0, seconds <= Self.maxTimeoutSeconds
        else {
            throw Invalid(message: "\"timeout\" must be a number of seconds from 0 to \(Int(Self.maxTimeoutSeconds))")
        }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }
}
