import ExecStreamCore
import Testing

@Suite("Base64")
struct Base64Tests {
    @Test("RFC 4648 test vectors, standard alphabet with padding", arguments: [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy"),
    ])
    func vectors(plain: String, encoded: String) throws {
        #expect(String(decoding: Base64.encode(Array(plain.utf8)), as: UTF8.self) == encoded)
        #expect(try Base64.decode(Array(encoded.utf8)) == Array(plain.utf8))
    }

    @Test("the alphabets differ only in 62 and 63")
    func alphabets() throws {
        let bytes: [UInt8] = [0xFB, 0xFF, 0xBF]
        #expect(String(decoding: Base64.encode(bytes), as: UTF8.self) == "+/+/")
        #expect(Base64.encodeURLSafeUnpadded(bytes) == "-_-_")
        #expect(Base64.encodeURLSafeUnpadded([0xFF]) == "_w")
        #expect(try Base64.decode(Array("+/+/".utf8)) == bytes)
    }

    @Test("malformed base64 is a typed error", arguments: ["Zg", "Zg=", "Z===", "Zm9v\n", "Zm9-", "=Zm9", "Zg==Zm9v", "Zm=v"])
    func malformed(text: String) {
        let error = #expect(throws: ExecStreamError.self) { try Base64.decode(Array(text.utf8)) }
        #expect(error?.code == .malformedInput)
    }
}
