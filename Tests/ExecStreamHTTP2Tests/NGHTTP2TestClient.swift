import CNghttp2
@testable import ExecStreamHTTP2
import NIOCore

/// An nghttp2 client session used as the peer of the server handler in tests: the paired-machine
/// style of swift-nio-http2's tests, with the real library on both sides and no sockets.
final class NGHTTP2TestClient {
    /// What the client saw of one stream.
    struct StreamRecord {
        var headers: [(String, String)] = []
        var trailers: [(String, String)] = []
        var body: [UInt8] = []
        var closedWithError: UInt32?
        /// The error code of a RST_STREAM the server sent, if any.
        var resetByServer: UInt32?
        var ended = false
        var headersDone = false

        var status: String? { self.headers.first { $0.0 == ":status" }?.1 }
    }

    private var session: OpaquePointer?
    private(set) var streams: [Int32: StreamRecord] = [:]
    private(set) var goAwayErrorCode: UInt32?
    private(set) var pingAcks = 0
    private(set) var receivedPings = 0
    /// Bytes to send per stream, served by the data provider.
    private var pendingBodies: [Int32: (bytes: [UInt8], endStream: Bool)] = [:]

    /// - Parameters:
    ///   - windowSize: the client's stream window; with `manualWindowUpdates`, the server can send
    ///     only this much until `consume` is called.
    init(windowSize: Int = 65535, manualWindowUpdates: Bool = false, answerPings: Bool = true) {
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, userData in
            let client = Unmanaged<NGHTTP2TestClient>.fromOpaque(userData!).takeUnretainedValue()
            let pair = (
                String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self),
                String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self)
            )
            let id = frame!.pointee.hd.stream_id
            if client.streams[id, default: StreamRecord()].headersDone {
                client.streams[id, default: StreamRecord()].trailers.append(pair)
            } else {
                client.streams[id, default: StreamRecord()].headers.append(pair)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            let client = Unmanaged<NGHTTP2TestClient>.fromOpaque(userData!).takeUnretainedValue()
            let header = frame!.pointee.hd
            let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            switch UInt32(header.type) {
            case NGHTTP2_HEADERS.rawValue:
                client.streams[header.stream_id, default: StreamRecord()].headersDone = true
                if endStream { client.streams[header.stream_id, default: StreamRecord()].ended = true }
            case NGHTTP2_DATA.rawValue:
                if endStream { client.streams[header.stream_id, default: StreamRecord()].ended = true }
            case NGHTTP2_RST_STREAM.rawValue:
                client.streams[header.stream_id, default: StreamRecord()].resetByServer = frame!.pointee.rst_stream.error_code
            case NGHTTP2_GOAWAY.rawValue:
                client.goAwayErrorCode = frame!.pointee.goaway.error_code
            case NGHTTP2_PING.rawValue:
                if header.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0 {
                    client.pingAcks += 1
                } else {
                    client.receivedPings += 1
                }
            default:
                break
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, userData in
            let client = Unmanaged<NGHTTP2TestClient>.fromOpaque(userData!).takeUnretainedValue()
            client.streams[streamID, default: StreamRecord()].body += UnsafeBufferPointer(start: data, count: length)
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, errorCode, userData in
            let client = Unmanaged<NGHTTP2TestClient>.fromOpaque(userData!).takeUnretainedValue()
            client.streams[streamID, default: StreamRecord()].closedWithError = errorCode
            return 0
        }
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        if manualWindowUpdates {
            nghttp2_option_set_no_auto_window_update(option, 1)
        }
        if !answerPings {
            nghttp2_option_set_no_auto_ping_ack(option, 1)
        }
        nghttp2_session_client_new2(&self.session, callbacks, Unmanaged.passUnretained(self).toOpaque(), option)
        var settings = [nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(windowSize))]
        nghttp2_submit_settings(self.session, 0, &settings, settings.count)
    }

    deinit {
        nghttp2_session_del(self.session)
    }

    /// Submits a request; `body` is sent (then END_STREAM if `endStream`). Returns the stream id.
    @discardableResult
    func request(
        method: String = "GET",
        path: String,
        headers: [(String, String)] = [],
        extendedConnectProtocol: String? = nil,
        body: [UInt8]? = nil,
        endStream: Bool = true
    ) -> Int32 {
        var fields = [(":method", method), (":scheme", "http"), (":authority", "localhost"), (":path", path)]
        if let extendedConnectProtocol {
            fields.append((":protocol", extendedConnectProtocol))
        }
        fields += headers
        if body == nil && endStream {
            return withNameValuePairs(fields) { nghttp2_submit_request(self.session, nil, $0, $1, nil, nil) }
        }
        var provider = nghttp2_data_provider()
        provider.read_callback = { session, streamID, buffer, length, flags, _, userData in
            let client = Unmanaged<NGHTTP2TestClient>.fromOpaque(userData!).takeUnretainedValue()
            guard var pending = client.pendingBodies[streamID] else { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
            let count = min(length, pending.bytes.count)
            pending.bytes.withUnsafeBufferPointer { buffer!.update(from: $0.baseAddress!, count: count) }
            pending.bytes.removeFirst(count)
            client.pendingBodies[streamID] = pending
            if pending.bytes.isEmpty {
                if pending.endStream {
                    flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                    client.pendingBodies[streamID] = nil
                } else if count == 0 {
                    return Int(NGHTTP2_ERR_DEFERRED.rawValue)
                }
            }
            return count
        }
        let id = withNameValuePairs(fields) { nghttp2_submit_request(self.session, nil, $0, $1, &provider, nil) }
        self.pendingBodies[id] = (body ?? [], endStream)
        return id
    }

    /// Queues more body bytes on an open request stream.
    func sendBody(_ bytes: [UInt8], on streamID: Int32, endStream: Bool) {
        var pending = self.pendingBodies[streamID] ?? ([], false)
        pending.bytes += bytes
        pending.endStream = endStream
        self.pendingBodies[streamID] = pending
        nghttp2_session_resume_data(self.session, streamID)
    }

    func resetStream(_ streamID: Int32, code: UInt32 = 0x8) {
        nghttp2_submit_rst_stream(self.session, 0, streamID, code)
    }

    /// Gives back `count` bytes of the stream window (with manual window updates).
    func consume(_ count: Int, on streamID: Int32) {
        nghttp2_session_consume(self.session, streamID, count)
    }

    /// Serialises everything the client has to send.
    func output() -> ByteBuffer {
        var buffer = ByteBuffer()
        while true {
            var data: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(self.session, &data)
            guard count > 0, let data else { break }
            buffer.writeBytes(UnsafeRawBufferPointer(start: data, count: count))
        }
        return buffer
    }

    /// Feeds bytes from the server.
    func receive(_ buffer: ByteBuffer) {
        _ = buffer.withUnsafeReadableBytes { bytes in
            nghttp2_session_mem_recv(self.session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count)
        }
    }
}

