#if canImport(Glibc)
import Glibc
#endif

/// systemd's readiness protocol (sd_notify(3)) for a `Type=notify` unit: one datagram per state
/// change to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
/// namespace). Without that variable (not under systemd) it does nothing; a failed send is
/// ignored, as sd_notify's callers do: readiness must never stop the server.
enum SystemdNotifier {
    /// Every listener is bound and accepting, and the containers have started.
    static func ready(status: String) {
        self.send("READY=1\nSTATUS=\(status)")
    }

    /// A graceful shutdown has begun.
    static func stopping(status: String) {
        self.send("STOPPING=1\nSTATUS=\(status)")
    }

    /// What the server is doing now, for `systemctl status`.
    static func status(_ status: String) {
        self.send("STATUS=\(status)")
    }

    private static func send(_ message: String) {
        guard let path = getenv("NOTIFY_SOCKET").map({ String(cString: $0) }), !path.isEmpty else { return }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") {
            bytes[0] = 0  // the abstract namespace
        }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: bytes)
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = message.utf8CString.withUnsafeBufferPointer { text in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    sendto(fd, text.baseAddress, text.count - 1, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
    }
}
