import ExecStreamCore
import NIOCore

/// One WebSocket message under every Kubernetes channel protocol; a decoded data message encodes
/// back to one that decodes equal to it. Also base64 alone.
enum ChannelMessageFuzzing {
    static func messages(_ bytes: [UInt8]) {
        let message = ByteBuffer(bytes: bytes)
        for channelProtocol in KubernetesChannelProtocol.allCases {
            guard let decoded = try? ChannelMessageCodec.decode(message, protocol: channelProtocol) else { continue }
            switch decoded {
            case .data(let channel, let payload):
                let (_, encoded) = ChannelMessageCodec.encode(payload, on: channel, protocol: channelProtocol)
                let again = try? ChannelMessageCodec.decode(encoded, protocol: channelProtocol)
                precondition(again == decoded, "a \(channelProtocol.rawValue) message did not survive encoding")
            case .close:
                precondition(channelProtocol.supportsClose, "a close message under \(channelProtocol.rawValue), which has none")
            }
        }
        if let decoded = try? Base64.decode(bytes) {
            let again = try? Base64.decode(Base64.encode(decoded))
            precondition(again == decoded, "base64 did not survive encoding")
        }
    }
}
