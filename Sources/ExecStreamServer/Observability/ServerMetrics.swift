import CoreMetrics
import ExecStreamCore
import ExecStreamHTTP2
import ExecStreamRemoteCommand
import Prometheus
import Synchronization

/// The server's Prometheus metrics, served at `/metrics`: swift-metrics instruments on a registry
/// of the server's own (nothing is bootstrapped globally, so servers in one process do not mix).
///
/// Sessions are observed at the session seam (this is their `SessionObserver`), never in a
/// protocol; admission refusals where admission decides, for every carrier; ExecSync where it
/// runs. Gauges of state (tokens in flight, IOChannels) are read when scraped.
final class ServerMetrics: SessionObserver {
    /// The metrics' registry, rendered by `exposition()`.
    let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    /// By stream: a session's stdin, stdout, stderr; a port-forward's bytes count as `portforward`.
    private let bytes: [StandardStream: CoreMetrics.Counter]
    private let forwardedBytes: (toService: CoreMetrics.Counter, toClient: CoreMetrics.Counter)
    private let tokensInFlight: CoreMetrics.Gauge
    private let channels: CoreMetrics.Gauge
    /// Sessions running now by kind, for the drain's progress lines.
    private let active = Mutex([ObservedSessionKind: Int]())

    /// Metric names, in one place.
    enum Name {
        static let sessionsStarted = "execstream_sessions_started_total"
        static let sessionsEnded = "execstream_sessions_ended_total"
        static let sessionsActive = "execstream_sessions_active"
        static let bytes = "execstream_session_bytes_total"
        static let sessionDuration = "execstream_session_duration_seconds"
        static let timeToFirstOutput = "execstream_time_to_first_output_seconds"
        static let spawnDuration = "execstream_process_spawn_seconds"
        static let processExits = "execstream_process_exits_total"
        static let admissionRefusals = "execstream_admission_refusals_total"
        static let execSyncs = "execstream_execsync_total"
        static let execSyncDuration = "execstream_execsync_duration_seconds"
        static let tokensInFlight = "execstream_streaming_tokens_in_flight"
        static let channels = "execstream_iochannels"
        static let bufferedBytes = "execstream_iochannel_buffered_bytes"
        static let pausedProducers = "execstream_iochannel_paused_producers"
        static let preemptions = "execstream_iochannel_preemptions_total"
        static let buildInfo = "execstream_build_info"
        static let http2Connections = "execstream_http2_connections_total"
        static let http2ConnectionsActive = "execstream_http2_connections_active"
        static let http2GoAways = "execstream_http2_goaways_total"
        static let http2Resets = "execstream_http2_stream_resets_total"
        static let tlsHandshakes = "execstream_tls_handshakes_total"
    }

    init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let fast: [Duration] = [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                                .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10)]
        let long: [Duration] = [.milliseconds(10), .milliseconds(100), .seconds(1), .seconds(10), .seconds(60), .seconds(600), .seconds(3600), .seconds(14400)]
        factory.durationHistogramBuckets = [
            Name.timeToFirstOutput: fast,
            Name.spawnDuration: [.microseconds(100), .microseconds(250), .microseconds(500)] + fast,
            Name.execSyncDuration: fast + [.seconds(30), .seconds(60), .seconds(300)],
            Name.sessionDuration: long,
        ]
        self.registry = registry
        self.factory = factory
        self.bytes = Dictionary(uniqueKeysWithValues: StandardStream.allCases.map { stream in
            let direction = stream == .stdin ? "in" : "out"
            return (stream, CoreMetrics.Counter(label: Name.bytes, dimensions: [("direction", direction), ("stream", stream.rawValue)], factory: factory))
        })
        self.forwardedBytes = (
            CoreMetrics.Counter(label: Name.bytes, dimensions: [("direction", "in"), ("stream", "portforward")], factory: factory),
            CoreMetrics.Counter(label: Name.bytes, dimensions: [("direction", "out"), ("stream", "portforward")], factory: factory)
        )
        self.tokensInFlight = CoreMetrics.Gauge(label: Name.tokensInFlight, factory: factory)
        self.channels = CoreMetrics.Gauge(label: Name.channels, factory: factory)
        CoreMetrics.Gauge(label: Name.buildInfo, dimensions: [("version", ExecStreamVersion.runtimeVersion)], factory: factory).record(1)
    }

    /// The Prometheus text exposition, with the state gauges (and the registry's own counts) read
    /// now.
    func exposition(tokensInFlight: Int, channels registry: ChannelRegistry) -> String {
        self.tokensInFlight.record(tokensInFlight)
        let statistics = registry.statistics
        self.channels.record(statistics.channelCount)
        CoreMetrics.Gauge(label: Name.bufferedBytes, factory: self.factory).record(statistics.bufferedByteCount)
        CoreMetrics.Gauge(label: Name.pausedProducers, factory: self.factory).record(statistics.pausedProducerCount)
        // The registry counts preemptions under its own lock; the counters catch up here.
        let now = registry.preemptions
        let (consumers, producers) = self.reportedPreemptions.withLock { reported in
            defer { reported = now }
            return (now.consumers - reported.consumers, now.producers - reported.producers)
        }
        CoreMetrics.Counter(label: Name.preemptions, dimensions: [("side", "consumer")], factory: self.factory).increment(by: consumers)
        CoreMetrics.Counter(label: Name.preemptions, dimensions: [("side", "producer")], factory: self.factory).increment(by: producers)
        return self.registry.emitToString()
    }

    private let reportedPreemptions = Mutex((consumers: 0, producers: 0))

    // MARK: SessionObserver

    func sessionStarted(_ session: ObservedSession) {
        let dimensions = [("kind", session.kind.rawValue), ("transport", session.transport)]
        CoreMetrics.Counter(label: Name.sessionsStarted, dimensions: dimensions, factory: self.factory).increment()
        self.active.withLock { $0[session.kind, default: 0] += 1 }
        Meter(label: Name.sessionsActive, dimensions: dimensions, factory: self.factory).increment()
    }

    func transferred(_ byteCount: Int, of stream: StandardStream, in session: ObservedSession) {
        switch session.kind {
        case .portForward:
            (stream == .stdin ? self.forwardedBytes.toService : self.forwardedBytes.toClient).increment(by: byteCount)
        case .exec, .attach, .containerdStream:
            self.bytes[stream]?.increment(by: byteCount)
        }
    }

    func firstOutput(after latency: Duration, in session: ObservedSession) {
        CoreMetrics.Timer(label: Name.timeToFirstOutput, dimensions: [("kind", session.kind.rawValue)], factory: self.factory).recordNanoseconds(latency.nanoseconds)
    }

    func processSpawned(after latency: Duration, in session: ObservedSession) {
        self.spawned(after: latency, kind: session.kind.rawValue)
    }

    /// A process of `kind` (exec, execsync) was spawned in `latency`.
    func spawned(after latency: Duration, kind: String) {
        CoreMetrics.Timer(label: Name.spawnDuration, dimensions: [("kind", kind)], factory: self.factory).recordNanoseconds(latency.nanoseconds)
    }

    func processExited(_ status: ProcessExitStatus, in session: ObservedSession) {
        self.processExited(status, kind: session.kind.rawValue)
    }

    /// A process of `kind` (exec, execsync) exited: `zero`, `nonzero` or `signal`.
    func processExited(_ status: ProcessExitStatus, kind: String) {
        let exitClass: String
        switch status {
        case .exited(0): exitClass = "zero"
        case .exited: exitClass = "nonzero"
        case .signaled: exitClass = "signal"
        }
        CoreMetrics.Counter(label: Name.processExits, dimensions: [("kind", kind), ("class", exitClass)], factory: self.factory).increment()
    }

    func sessionEnded(_ session: ObservedSession, _ end: ObservedSessionEnd) {
        let dimensions = [("kind", session.kind.rawValue), ("transport", session.transport)]
        Meter(label: Name.sessionsActive, dimensions: dimensions, factory: self.factory).decrement()
        self.active.withLock { $0[session.kind, default: 0] -= 1 }
        CoreMetrics.Counter(label: Name.sessionsEnded, dimensions: dimensions + [("outcome", end.outcomeLabel)], factory: self.factory).increment()
        CoreMetrics.Timer(label: Name.sessionDuration, dimensions: [("kind", session.kind.rawValue)], factory: self.factory).recordNanoseconds(end.duration.nanoseconds)
    }

    /// Sessions running now, by kind (kinds with none left out).
    var activeSessions: [ObservedSessionKind: Int] {
        self.active.withLock { $0.filter { $0.value > 0 } }
    }

    // MARK: Outside sessions

    /// A streaming request refused before any streaming, with the HTTP status it got.
    func refused(status: Int) {
        CoreMetrics.Counter(label: Name.admissionRefusals, dimensions: [("status", String(status))], factory: self.factory).increment()
    }

    /// An ExecSync ended: `exit_zero`, `exit_nonzero`, `not_started`, `timeout` or `error`.
    func execSyncEnded(outcome: String, duration: Duration) {
        CoreMetrics.Counter(label: Name.execSyncs, dimensions: [("outcome", outcome)], factory: self.factory).increment()
        CoreMetrics.Timer(label: Name.execSyncDuration, factory: self.factory).recordNanoseconds(duration.nanoseconds)
    }
}

// MARK: Connections

extension ServerMetrics: HTTP2ConnectionObserver {
    func connectionOpened() {
        CoreMetrics.Counter(label: Name.http2Connections, factory: self.factory).increment()
        Meter(label: Name.http2ConnectionsActive, factory: self.factory).increment()
    }

    func connectionClosed() {
        Meter(label: Name.http2ConnectionsActive, factory: self.factory).decrement()
    }

    func goAway(code: UInt32, sent: Bool) {
        let dimensions = [("direction", sent ? "sent" : "received"), ("code", HTTP2ErrorCode.name(of: code))]
        CoreMetrics.Counter(label: Name.http2GoAways, dimensions: dimensions, factory: self.factory).increment()
    }

    func streamReset(code: UInt32, sent: Bool) {
        let dimensions = [("direction", sent ? "sent" : "received"), ("code", HTTP2ErrorCode.name(of: code))]
        CoreMetrics.Counter(label: Name.http2Resets, dimensions: dimensions, factory: self.factory).increment()
    }

    /// A TLS handshake on a listener of `plane` (`data`, `control`) completed or failed (an error,
    /// or the peer gone before it completed).
    func tlsHandshake(succeeded: Bool, plane: String) {
        let dimensions = [("plane", plane), ("outcome", succeeded ? "ok" : "failed")]
        CoreMetrics.Counter(label: Name.tlsHandshakes, dimensions: dimensions, factory: self.factory).increment()
    }
}

extension Duration {
    /// Whole nanoseconds, as swift-metrics' timers take them.
    fileprivate var nanoseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
