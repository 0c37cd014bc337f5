/// Every decoder that reads a peer's bytes, as a libFuzzer target. `make fuzz` runs each one under
/// libFuzzer (`Fuzz/Driver`); the unit tests replay the committed seed corpus and every input that
/// once crashed (`Fuzz/Regressions`), so a crash found once stays fixed.
///
/// A target may throw any `ExecStreamError` on bad input: that is the defined answer. What it must
/// never do is crash, hang, or break an invariant checked with `precondition` (a decoded frame
/// re-encodes to itself, a stream split anywhere decodes as it does whole).
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// SPDY/3.1 frames, and the zlib header blocks inside SYN_STREAM, SYN_REPLY and HEADERS.
    case spdyFrames = "spdy-frames"
    /// One compressed SPDY header block on a fresh inflate stream, and the uncompressed layout.
    case spdyHeaderBlock = "spdy-header-block"
    /// RFC 6455 client frames (the RFC 8441 carrier's decoder and the rules both carriers apply).
    case webSocketFrames = "websocket-frames"
    /// RFC 6455 server frames as the CLI's port-forward reads them.
    case webSocketServerFrames = "websocket-server-frames"
    /// ExecStream's native HTTP/2 streaming frames.
    case nativeFrames = "native-frames"
    /// `channel.k8s.io` … `v5.channel.k8s.io` messages, binary and base64.
    case channelMessages = "channel-messages"
    /// Terminal resize JSON objects, as a stream.
    case resizeJSON = "resize-json"
    /// gRPC length-prefixed messages, `grpc-timeout` and `grpc-message` percent-decoding.
    case grpcFraming = "grpc-framing"
    /// The first bytes of a connection: HTTP/2 preface or HTTP/1.1.
    case connectionPreface = "connection-preface"
    /// The YAML config file.
    case configurationFile = "configuration-file"
    /// What a console prints, read by the command fence and the expectations' searches.
    case consoleOutput = "console-output"

    /// Runs the target over one input.
    public func run(_ input: UnsafeRawBufferPointer) {
        let bytes = [UInt8](input)
        switch self {
        case .spdyFrames: SPDYFuzzing.frames(bytes)
        case .spdyHeaderBlock: SPDYFuzzing.headerBlock(bytes)
        case .webSocketFrames: WebSocketFuzzing.frames(bytes)
        case .webSocketServerFrames: WebSocketClientFuzzing.frames(bytes)
        case .nativeFrames: NativeFrameFuzzing.frames(bytes)
        case .channelMessages: ChannelMessageFuzzing.messages(bytes)
        case .resizeJSON: ResizeFuzzing.objects(bytes)
        case .grpcFraming: GRPCFuzzing.framing(bytes)
        case .connectionPreface: ConnectionPrefaceFuzzing.classify(bytes)
        case .configurationFile: ConfigurationFuzzing.parse(bytes)
        case .consoleOutput: ConsoleOutputFuzzing.output(bytes)
        }
    }

    /// Runs the target over one input held in an array (the replay tests).
    public func run(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { self.run($0) }
    }
}
