/// An ordered list of header fields. Names are kept as received (HTTP/2 requires lowercase).
public struct HTTP2Headers: Hashable, Sendable, Sequence, ExpressibleByDictionaryLiteral {
    /// One header field.
    public struct Field: Hashable, Sendable {
        /// The field name, lowercase.
        public var name: String
        /// The field value.
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// The fields, in order.
    public private(set) var fields: [Field]

    public init(_ fields: [Field] = []) {
        self.fields = fields
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.fields = elements.map { Field(name: $0.0, value: $0.1) }
    }

    /// Appends a field.
    public mutating func add(name: String, value: String) {
        self.fields.append(Field(name: name, value: value))
    }

    /// The first value of `name` (compared case-insensitively), if any.
    public subscript(first name: String) -> String? {
        let lowered = name.lowercased()
        return self.fields.first { $0.name == lowered }?.value
    }

    /// Every value of `name`, in order.
    public subscript(all name: String) -> [String] {
        let lowered = name.lowercased()
        return self.fields.filter { $0.name == lowered }.map(\.value)
    }

    public func makeIterator() -> IndexingIterator<[Field]> {
        self.fields.makeIterator()
    }
}

/// The request head of a stream: pseudo-header fields and regular fields.
public struct HTTP2RequestHead: Hashable, Sendable {
    /// `:method`
    public var method: String
    /// `:scheme` (absent for plain CONNECT)
    public var scheme: String?
    /// `:authority`
    public var authority: String?
    /// `:path` (absent for plain CONNECT)
    public var path: String?
    /// `:protocol` of an extended CONNECT (RFC 8441), e.g. `websocket`.
    public var extendedConnectProtocol: String?
    /// Every regular field.
    public var headers: HTTP2Headers

    public init(method: String, scheme: String? = nil, authority: String? = nil, path: String? = nil, extendedConnectProtocol: String? = nil, headers: HTTP2Headers = HTTP2Headers()) {
        self.method = method
        self.scheme = scheme
        self.authority = authority
        self.path = path
        self.extendedConnectProtocol = extendedConnectProtocol
        self.headers = headers
    }

    /// The path without its query string.
    public var pathWithoutQuery: String? {
        self.path.map { path in path.firstIndex(of: "?").map { String(path[..<$0]) } ?? path }
    }
}
