public import NIOCore

/// Settings and limits of the HTTP/2 server. Defaults follow ARCHITECTURE.md ("The nghttp2
/// transport"): 1 MiB stream windows measured fastest here, CRI's 16 MiB message limit lives in
/// the gRPC layer.
public struct HTTP2Configuration: Hashable, Sendable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams above it are refused (REFUSED_STREAM).
    public var maxConcurrentStreams: Int
    /// SETTINGS_INITIAL_WINDOW_SIZE: how much a client may send on one stream before we consume.
    public var streamWindowSize: Int
    /// The connection flow-control window we grant.
    public var connectionWindowSize: Int
    /// SETTINGS_MAX_HEADER_LIST_SIZE: a request whose headers are larger gets 431.
    public var maxHeaderListSize: Int
    /// Outbound bytes queued per stream above which writers are suspended.
    public var outboundHighWatermark: Int
    /// Outbound bytes queued per stream at or below which suspended writers resume.
    public var outboundLowWatermark: Int
    /// Interval without inbound frames after which we send a keepalive PING.
    public var keepaliveInterval: TimeAmount
    /// How long a keepalive PING may go unanswered before the connection is closed.
    public var keepaliveTimeout: TimeAmount
    /// How long a connection may have no open stream before it is gracefully closed.
    public var idleTimeout: TimeAmount
    /// How long a graceful shutdown waits for open streams before closing the connection.
    public var gracefulShutdownTimeout: TimeAmount
    /// The stream reset rate limit (rapid reset, CVE-2023-44487): a token bucket of `burst`
    /// resets refilled at `ratePerSecond`; a client exceeding it gets GOAWAY ENHANCE_YOUR_CALM.
    /// Only resets of streams whose response is not complete count (`StreamResetRateLimit`).
    public var streamResetBurst: Int
    /// See `streamResetBurst`.
    public var streamResetRatePerSecond: Int
    /// nghttp2's limit on CONTINUATION frames per header block (CVE-2024-28182).
    public var maxContinuations: Int
    /// DATA bytes one send loop serialises before it yields to the event loop and continues on
    /// its next iteration. Writing everything the peer's window allows in one go leaves the pipe
    /// empty while the peer's WINDOW_UPDATE waits to be read; yielding lets it be read while bytes
    /// are still in flight. Measured with h2load and 1 MiB windows: 256 KiB lifted the median from
    /// 0.76x to 0.98x of nghttpd's throughput at about its CPU per GiB (see `make bench`).
    public var maxDataBytesPerSendLoop: Int
    /// nghttp2's HTTP messaging checks (RFC 9113 §8: pseudo-headers, their values, content-length).
    /// Off only where peers are trusted and some send what they forbid: grpc-go clients of the
    /// crictl 1.2x era name a unix socket's path as `:authority`, which the checks refuse with a
    /// PROTOCOL_ERROR reset. The server turns them off on its unix socket (mode 0600) only.
    public var validatesHTTPMessaging: Bool = true

    public init(
        maxConcurrentStreams: Int = 1000,
        streamWindowSize: Int = 1 << 20,
        connectionWindowSize: Int = 16 << 20,
        maxHeaderListSize: Int = 64 << 10,
        outboundHighWatermark: Int = 1 << 20,
        outboundLowWatermark: Int = 256 << 10,
        keepaliveInterval: TimeAmount = .seconds(60),
        keepaliveTimeout: TimeAmount = .seconds(20),
        idleTimeout: TimeAmount = .minutes(30),
        gracefulShutdownTimeout: TimeAmount = .seconds(30),
        streamResetBurst: Int = 1000,
        streamResetRatePerSecond: Int = 33,
        maxContinuations: Int = 8,
        maxDataBytesPerSendLoop: Int = 256 << 10
    ) {
        self.maxConcurrentStreams = maxConcurrentStreams
        self.streamWindowSize = streamWindowSize
        self.connectionWindowSize = connectionWindowSize
        self.maxHeaderListSize = maxHeaderListSize
        self.outboundHighWatermark = outboundHighWatermark
        self.outboundLowWatermark = outboundLowWatermark
        self.keepaliveInterval = keepaliveInterval
        self.keepaliveTimeout = keepaliveTimeout
        self.idleTimeout = idleTimeout
        self.gracefulShutdownTimeout = gracefulShutdownTimeout
        self.streamResetBurst = streamResetBurst
        self.streamResetRatePerSecond = streamResetRatePerSecond
        self.maxContinuations = maxContinuations
        self.maxDataBytesPerSendLoop = maxDataBytesPerSendLoop
    }
}
