import ExecStreamCore
import Testing

@Suite("Terminal size decoder")
struct TerminalSizeDecoderTests {
    func decodeAll(_ text: String) throws -> [TerminalSize] {
        var decoder = TerminalSizeDecoder()
        return try decoder.feed(Array(text.utf8))
    }

    @Test("client-go's messages, concatenated, split at every byte")
    func concatenatedAndSplit() throws {
        let stream = Array(#"{"Width":80,"Height":24}"#.utf8) + [0x0A] + Array(#" {"Width":132,"Height":43}"#.utf8) + [0x0A]
        for split in 0...stream.count {
            var decoder = TerminalSizeDecoder()
            var sizes = try decoder.feed(stream[..<split])
            sizes += try decoder.feed(stream[split...])
            #expect(sizes == [TerminalSize(width: 80, height: 24), TerminalSize(width: 132, height: 43)], "split at \(split)")
        }
    }

    @Test("keys match case-insensitively; the last duplicate wins; unknown keys are skipped; missing and null leave 0")
    func goSemantics() throws {
        #expect(try self.decodeAll(#"{"width":1,"HEIGHT":2}"#) == [TerminalSize(width: 1, height: 2)])
        #expect(try self.decodeAll(#"{"Width":1,"Width":7,"Height":2}"#) == [TerminalSize(width: 7, height: 2)])
        #expect(try self.decodeAll(#"{"x":{"a":["}{",1e3,true,null]},"Width":3,"s":"\"}","Height":65535}"#)
            == [TerminalSize(width: 3, height: 65535)])
        #expect(try self.decodeAll(#"{"Height":9}{}"#) == [TerminalSize(width: 0, height: 9), TerminalSize(width: 0, height: 0)])
        #expect(try self.decodeAll(#"{"Width":null,"Height":0}"#) == [TerminalSize(width: 0, height: 0)])
        #expect(try self.decodeAll(#"{"W\u0069dth":5}"#) == [TerminalSize(width: 5, height: 0)])
    }

    @Test("malformed input is a typed error", arguments: [
        #"{"Width":-1}"#, #"{"Width":65536}"#, #"{"Width":80.0}"#, #"{"Width":8e1}"#, #"{"Width":"80"}"#, #"{"Width":080}"#,
        #"[1]"#, "x", #"{"Width":80,}"#, #"{"Width" 80}"#, #"{Width:80}"#, #"{"Width":tru}"#, #"{"a":"\q"}"#, "{\"a\":\"\u{1}\"}",
    ])
    func malformed(text: String) {
        let error = #expect(throws: ExecStreamError.self) { try self.decodeAll(text) }
        #expect(error?.code == .malformedInput)
    }

    @Test("an object over the limit is messageTooLarge, before it completes")
    func oversized() {
        var decoder = TerminalSizeDecoder(maxObjectBytes: 64)
        let error = #expect(throws: ExecStreamError.self) {
            try decoder.feed(Array(("{\"pad\":\"" + String(repeating: "a", count: 100)).utf8))
        }
        #expect(error?.code == .messageTooLarge)
    }
}

@Suite("Terminal size decoder: a size before garbage")
struct TerminalSizeBeforeGarbageTests {
    @Test("a valid size followed by garbage in the same chunk is kept (found by the resize-json fuzz target)")
    func sizeBeforeGarbageIsKept() {
        var decoder = TerminalSizeDecoder()
        var sizes: [TerminalSize] = []
        #expect(throws: ExecStreamError.self) { try decoder.feed(Array("{\"Width\":80,\"Height\":24}\n/".utf8), into: &sizes) }
        #expect(sizes == [TerminalSize(width: 80, height: 24)])
    }
}
