/// What the kernel lets `execve` take, checked before a command is accepted, so that an oversized
/// argument is a short INVALID_ARGUMENT at once instead of an E2BIG later (or a reply too large
/// to send that names the whole command).
///
/// Linux refuses any one string of 32 pages (`MAX_ARG_STRLEN`, 131,072 bytes with its NUL) and
/// all of them together past a quarter of the stack limit (2 MiB with the usual 8 MiB); the total
/// here stays well inside that.
public struct CommandLineLimits: Hashable, Sendable {
    /// The longest argument or environment entry, in bytes.
    public var maxStringBytes: Int
    /// Arguments and environment together: their bytes, a NUL and a pointer each.
    public var maxTotalBytes: Int

    /// The kernel's per-string limit, and 1 MiB in all.
    public init(maxStringBytes: Int = 131_071, maxTotalBytes: Int = 1 << 20) {
        self.maxStringBytes = maxStringBytes
        self.maxTotalBytes = maxTotalBytes
    }

    /// Throws `invalidArgument` with a short message (sizes and positions, never the text) if
    /// `arguments` and `environment` could not be passed to a process.
    public func validate(arguments: [String], environment: [String]) throws(ExecStreamError) {
        var total = 0
        for (kind, strings) in [("argument", arguments), ("environment entry", environment)] {
            for (index, string) in strings.enumerated() {
                let size = string.utf8.count
                if size > self.maxStringBytes {
                    throw ExecStreamError(
                        code: .invalidArgument,
                        message: "\(kind) \(index) is \(size) bytes; at most \(self.maxStringBytes) are allowed"
                    )
                }
                if string.utf8.contains(0) {
                    throw ExecStreamError(code: .invalidArgument, message: "\(kind) \(index) contains a NUL byte")
                }
                total += size + 1 + MemoryLayout<UnsafeRawPointer>.size
            }
        }
        if total > self.maxTotalBytes {
            throw ExecStreamError(
                code: .invalidArgument,
                message: "the command's arguments and environment take \(total) bytes; at most \(self.maxTotalBytes) are allowed"
            )
        }
    }

    /// A command word fit for a message: at most `maxBytes` bytes of it, cut at a character.
    public static func displayed(_ word: String, maxBytes: Int = 128) -> String {
        guard word.utf8.count > maxBytes else { return word }
        var cut = ""
        for character in word {
            guard cut.utf8.count + character.utf8.count <= maxBytes else { break }
            cut.append(character)
        }
        return cut + "…"
    }
}
