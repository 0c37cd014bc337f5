public import ExecStreamHTTP2
import Foundation
public import NIOCore

/// One forwarded TCP connection to a port of a sandbox: a port-forward URL served as a WebSocket
/// (`v4.channel.k8s.io`) on an HTTP/2 stream of the connection that issued it (RFC 8441), so it
/// goes wherever the control connection goes (unix socket, mutual TLS) with no second connection.
///
/// Channel 0 carries the port's data, channel 1 its errors; each starts with the port as two
/// little-endian bytes (PROTOCOLS.md §4). The protocol has no half-close: the connection ends
/// when either side closes the WebSocket.
public final class PortForwardStream: Sendable {
    /// The subprotocol spoken.
    public static let subprotocol = "v4.channel.k8s.io"

    private let stream: HTTP2ClientStream
    /// The remote port.
    public let port: UInt16

    private init(stream: HTTP2ClientStream, port: UInt16) {
        self.stream = stream
        self.port = port
    }

    /// Opens the port-forward `url` (issued for `port` alone) on `connection`, and waits for the
    /// server to accept it.
    public static func open(url: String, port: UInt16, on connection: HTTP2ClientConnection) async throws(ClientError) -> (PortForwardStream, HTTP2ClientResponse.AsyncIterator) {
        guard let components = URLComponents(string: url), !components.path.isEmpty else {
            throw ClientError(code: .protocolError, message: "the server returned an invalid streaming URL: \(url)")
        }
        let headers = [
            HTTP2ClientHeader(":protocol", "websocket"),
            HTTP2ClientHeader("sec-websocket-version", "13"),
            HTTP2ClientHeader("sec-websocket-protocol", Self.subprotocol),
        ]
        let stream: HTTP2ClientStream
        var events: HTTP2ClientResponse.AsyncIterator
        let status: Int
        do {
            stream = try await connection.makeStream(method: "CONNECT", path: components.path, headers: headers)
            events = stream.response.makeAsyncIterator()
            guard case .head(let code, _)? = try await events.next() else {
                throw ClientError(code: .protocolError, message: "port-forward to \(port): the stream ended without a response")
            }
            status = code
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(code: .unavailable, message: "port-forward to \(port): \(error)")
        }
        guard status == 200 else {
            var body = ""
            while let event = try? await events.next() {
                if case .data(let chunk) = event { body += String(buffer: chunk) }
            }
            stream.reset()
            let reason = body.trimmingCharacters(in: .whitespacesAndNewlines)
            throw ClientError(code: .streamRefused, message: "port-forward to \(port) refused (HTTP \(status))\(reason.isEmpty ? "" : ": \(reason)")")
        }
        return (PortForwardStream(stream: stream, port: port), events)
    }

    /// Sends bytes to the port (suspends while the server's window is full).
    public func send(_ bytes: ByteBuffer) async throws {
        var message = ByteBuffer(integer: UInt8(0))
        message.writeImmutableBuffer(bytes)
        try await self.stream.write(WebSocketClientFraming.frame(.binary, message))
    }

    /// Ends the forwarded connection: a close frame (1000), then the end of the stream.
    public func close() async {
        try? await self.stream.write(WebSocketClientFraming.frame(.close, ByteBuffer(integer: UInt16(1000))))
        self.stream.finish()
    }

    /// Gives up at once: resets the stream.
    public func cancel() {
        self.stream.reset()
    }

    /// Hands every byte from the port to `data`, in order, until the server ends the connection;
    /// returns what the server said on the error channel ("" for a clean end).
    public static func receive(
        _ events: inout HTTP2ClientResponse.AsyncIterator,
        port: UInt16,
        data: (ByteBuffer) async throws -> Void
    ) async throws -> String {
        var framing = WebSocketClientFraming()
        var prefixes: Set<UInt8> = []
        var errors = ""
        while let event = try await events.next() {
            guard case .data(let chunk) = event else { continue }
            framing.receive(chunk)
            while let frame = try framing.nextFrame() {
                switch frame.opcode {
                case .binary, .text:
                    var payload = frame.payload
                    guard let channel = payload.readInteger(as: UInt8.self) else { continue }
                    // Each channel's first message is the port, little-endian.
                    if prefixes.insert(channel).inserted {
                        guard payload.readInteger(endianness: .little, as: UInt16.self) == port else {
                            throw ClientError(code: .protocolError, message: "port-forward to \(port): channel \(channel) opened for another port")
                        }
                        guard payload.readableBytes > 0 else { continue }
                    }
                    switch channel {
                    case 0: try await data(payload)
                    case 1: errors += String(buffer: payload)
                    default: throw ClientError(code: .protocolError, message: "port-forward to \(port): data on unknown channel \(channel)")
                    }
                case .close:
                    return errors
                case .ping, .pong, .continuation:
                    // The server sends no fragments and no pings; a pong answers nothing we sent.
                    continue
                }
            }
        }
        return errors
    }
}
