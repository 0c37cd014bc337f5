import ExecStreamCore
public import Logging

#if canImport(Glibc)
import Glibc
#endif

/// How log lines are written.
public enum LogFormat: String, CaseIterable, Sendable {
    /// One JSON object per line: `time`, `level`, `logger`, `message`, then the metadata's keys.
    case json
    /// One line for people: time, level, logger, message, then `key=value` pairs, values as they are.
    case text

    /// Parses `--log-format` or the config's `logFormat`; nil for anything else.
    public init?(parsing text: String) {
        self.init(rawValue: text)
    }
}

extension Logger.Level {
    /// Parses `--log-level` or the config's `logLevel`. Throws for anything swift-log does not
    /// know: a misspelt level must not silently become `info`.
    public init(parsingLogLevel text: String) throws(ServerError) {
        guard let level = Logger.Level(rawValue: text) else {
            let known = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
            throw ServerError(code: .invalidConfiguration, message: "unknown log level \"\(text)\" (one of \(known))")
        }
        self = level
    }
}

/// The server's log handler: lines on standard error, in `LogFormat`, written whole with one
/// `write(2)` each, so lines from different threads never interleave.
public struct ServerLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let format: LogFormat

    public init(label: String, format: LogFormat, level: Logger.Level) {
        self.label = label
        self.format = format
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let extra = event.metadata {
            merged.merge(extra) { _, new in new }
        }
        let line: String
        switch self.format {
        case .json:
            line = Self.jsonLine(time: Self.timestamp(), level: event.level, label: self.label, message: "\(event.message)", metadata: merged)
        case .text:
            line = Self.textLine(time: Self.timestamp(), level: event.level, label: self.label, message: "\(event.message)", metadata: merged)
        }
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return }
                offset += written
            }
        }
    }

    // MARK: Lines

    /// A JSON object on one line; metadata keys after the fixed ones, sorted.
    static func jsonLine(time: String, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var fields = [("time", JSONText.string(time)), ("level", JSONText.string(level.rawValue)), ("logger", JSONText.string(label)),
                      ("message", JSONText.string(message))]
        for key in metadata.keys.sorted() where !["time", "level", "logger", "message"].contains(key) {
            fields.append((key, JSONText.value(metadata[key]!)))
        }
        return "{" + fields.map { JSONText.string($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
    }

    /// `time level logger: message key=value …`, values as they are (as swift-log's own stream
    /// handler writes them): for people and grep; `json` is the format for machines.
    static func textLine(time: String, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var line = "\(time) \(level.rawValue) \(label): \(message)"
        for key in metadata.keys.sorted() {
            line += " \(key)=\(metadata[key]!)"
        }
        return line
    }

    /// Now, as RFC 3339 in UTC with milliseconds.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let milliseconds = Int(now.tv_nsec / 1_000_000)
        let fraction = String(repeating: "0", count: 3 - String(milliseconds).count) + String(milliseconds)
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }
}

/// JSON text for log lines, without Foundation's encoder (a log line must not allocate a coder).
enum JSONText {
    static func string(_ text: String) -> String {
        JSONWriter.quoted(text)
    }

    static func value(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let text):
            return Self.string(text)
        case .stringConvertible(let convertible):
            // Numbers and booleans stay numbers and booleans, so a JSON reader gets them typed.
            switch convertible {
            case is any BinaryInteger, is Bool:
                return convertible.description
            case let number as Double where number.isFinite:
                return convertible.description
            default:
                return Self.string(convertible.description)
            }
        case .array(let values):
            return "[" + values.map(Self.value).joined(separator: ",") + "]"
        case .dictionary(let dictionary):
            return "{" + dictionary.keys.sorted().map { Self.string($0) + ":" + Self.value(dictionary[$0]!) }.joined(separator: ",") + "}"
        }
    }
}
