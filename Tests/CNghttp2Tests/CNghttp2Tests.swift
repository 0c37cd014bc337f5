import CNghttp2
import Testing

/// Proves the system-library target links Debian's libnghttp2 and that its API is the 1.52 one
/// ARCHITECTURE.md builds on.
@Suite("CNghttp2")
struct CNghttp2Tests {
    @Test("the linked libnghttp2 is at least 1.52")
    func versionIsAtLeast152() throws {
        let info = try #require(nghttp2_version(0))
        #expect(info.pointee.version_num >= 0x01_34_00)
        let text = try #require(info.pointee.version_str)
        #expect(String(cString: text).hasPrefix("1."))
    }

    @Test("a client session serialises the connection preface and a SETTINGS frame")
    func clientSessionWritesPreface() throws {
        var callbacks: OpaquePointer?
        #expect(nghttp2_session_callbacks_new(&callbacks) == 0)
        defer { nghttp2_session_callbacks_del(callbacks) }
        var session: OpaquePointer?
        #expect(nghttp2_session_client_new(&session, callbacks, nil) == 0)
        defer { nghttp2_session_del(session) }

        var setting = nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: 100)
        #expect(nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &setting, 1) == 0)

        var output: [UInt8] = []
        while true {
            var data: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(session, &data)
            #expect(count >= 0)
            guard count > 0, let data else { break }
            output.append(contentsOf: UnsafeBufferPointer(start: data, count: count))
        }
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        try #require(output.count == preface.count + 9 + 6)
        #expect(Array(output.prefix(preface.count)) == preface)
        // SETTINGS frame header: length 6, type 4, flags 0, stream 0; then id 3 = 100.
        #expect(Array(output[preface.count...]) == [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100])
    }
}
