import ExecStreamCore
import NIOCore

/// gRPC's length-prefixed messages split anywhere, `grpc-timeout` values, and `grpc-message`
/// percent-encoding (what we decode from clients; what we encode must decode back).
enum GRPCFuzzing {
    static func framing(_ bytes: [UInt8]) {
        _ = StreamSplitting.decodeBothWays(bytes) { GRPCMessageDeframer(maxMessageByteCount: 1 << 16) }
        let text = String(decoding: bytes, as: UTF8.self)
        if let timeout = GRPCWire.parseTimeout(text) {
            precondition(timeout.nanoseconds >= 0, "a negative grpc-timeout was accepted: \(text)")
        }
        _ = GRPCWire.percentDecode(text)
        precondition(GRPCWire.percentDecode(GRPCWire.percentEncode(text)) == text, "grpc-message percent-encoding did not round-trip")
        let field = GRPCWire.statusMessageField(text)
        precondition(field.utf8.count <= 1024, "a grpc-message field over 1 KiB")
    }
}
