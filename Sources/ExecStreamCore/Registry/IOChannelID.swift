/// Which of a process's three standard streams a channel carries.
public enum StandardStream: String, Hashable, Sendable, CaseIterable {
    /// The process's input: the network is the producer, the process the consumer.
    case stdin
    /// The process's output: the process is the producer, the network the consumer.
    case stdout
    /// The process's error output: the process is the producer, the network the consumer.
    case stderr
}

/// The key of an IOChannel: `<container-or-exec-id>-stdin|stdout|stderr`.
///
/// This is the id containerd's streaming API uses (`StreamInit.id`), so it parses from and prints
/// to exactly that form. The owner part may itself contain dashes; the suffix decides the stream.
public struct IOChannelID: Hashable, Sendable, CustomStringConvertible {
    /// The container or exec the channel belongs to.
    public var owner: String
    /// Which standard stream of that process it carries.
    public var stream: StandardStream

    public init(owner: String, stream: StandardStream) {
        self.owner = owner
        self.stream = stream
    }

    /// Parses `<owner>-stdin|stdout|stderr`; nil for anything else, including an empty owner.
    public init?(parsing text: String) {
        guard let dash = text.lastIndex(of: "-") else { return nil }
        let owner = String(text[..<dash])
        guard !owner.isEmpty, let stream = StandardStream(rawValue: String(text[text.index(after: dash)...])) else {
            return nil
        }
        self.init(owner: owner, stream: stream)
    }

    public var description: String { "\(self.owner)-\(self.stream.rawValue)" }
}
