import ExecStreamCore
import NIOCore
import Testing

@Suite("WebSocket message assembly")
struct WebSocketMessageAssemblerTests {
    @Test("fragments join into one message; a whole frame is a message of its own")
    func joins() throws {
        var assembler = WebSocketMessageAssembler(maxMessageByteCount: 16)
        #expect(try assembler.receive(opcode: .binary, fin: false, payload: ByteBuffer(string: "ab")) == nil)
        #expect(try assembler.receive(opcode: .continuation, fin: false, payload: ByteBuffer(string: "cd")) == nil)
        #expect(try assembler.receive(opcode: .continuation, fin: true, payload: ByteBuffer(string: "ef"))
            == WebSocketMessageAssembler.Message(isText: false, payload: ByteBuffer(string: "abcdef")))
        #expect(try assembler.receive(opcode: .text, fin: true, payload: ByteBuffer(string: "é"))
            == WebSocketMessageAssembler.Message(isText: true, payload: ByteBuffer(string: "é")))
    }

    @Test("what RFC 6455 forbids, with its close code: 1002, 1007, 1009")
    func failures() {
        func failure(_ frames: [(WebSocketFrameOpcode, Bool, [UInt8])]) -> WebSocketFailure? {
            var assembler = WebSocketMessageAssembler(maxMessageByteCount: 8)
            do {
                for (opcode, fin, payload) in frames {
                    _ = try assembler.receive(opcode: opcode, fin: fin, payload: ByteBuffer(bytes: payload))
                }
                return nil
            } catch {
                return error
            }
        }
        #expect(failure([(.continuation, true, [1])])?.closeCode == 1002)
        #expect(failure([(.binary, false, [1]), (.text, true, [2])])?.closeCode == 1002)
        #expect(failure([(.text, true, [0xFF, 0xFE])])?.closeCode == 1007)
        #expect(failure([(.text, false, [0xC3]), (.continuation, true, [0xA9])]) == nil, "UTF-8 is checked on the whole message")
        #expect(failure([(.binary, true, [UInt8](repeating: 0, count: 9))])?.closeCode == 1009)
        #expect(failure([(.binary, false, [UInt8](repeating: 0, count: 5)), (.continuation, false, [UInt8](repeating: 0, count: 4))])?.closeCode == 1009)
        #expect(failure([(.binary, true, [0xFF, 0xFE])]) == nil, "binary messages are not UTF-8")
    }

    @Test("a frame decoder's errors: too large is 1009, anything else 1002")
    func decoderErrors() {
        #expect(WebSocketFailure(ExecStreamError(code: .messageTooLarge, message: "x")).closeCode == 1009)
        #expect(WebSocketFailure(ExecStreamError(code: .malformedInput, message: "x")).closeCode == 1002)
    }
}
