import ExecStreamCore
import NIOCore
import Testing

@Suite("Credited sender (containerd WindowUpdate)")
struct CreditedSenderTests {
    func chunks(_ sizes: [Int]) -> [ByteBuffer] {
        var next: UInt8 = 0
        return sizes.map { size in
            ByteBuffer(bytes: (0..<size).map { _ in
                next &+= 1
                return next
            })
        }
    }

    @Test("nothing leaves without credit, and never more than the credit")
    func honoursCredit() throws {
        var sender = CreditedSender()
        sender.take(self.chunks([100, 50]), byteCount: 150)
        #expect(sender.nextMessage(maxBytes: 1 << 16) == nil)
        try sender.grant(30)
        #expect(sender.nextMessage(maxBytes: 1 << 16)?.readableBytes == 30)
        #expect(sender.nextMessage(maxBytes: 1 << 16) == nil)
        #expect(sender.completeDelivery() == nil)
        try sender.grant(1000)
        #expect(sender.nextMessage(maxBytes: 1 << 16)?.readableBytes == 70)
        #expect(sender.nextMessage(maxBytes: 1 << 16)?.readableBytes == 50)
        #expect(sender.nextMessage(maxBytes: 1 << 16) == nil)
        #expect(sender.completeDelivery() == 150)
        #expect(sender.credit == 880)
        #expect(!sender.holdsDelivery)
    }

    @Test("messages are cut at maxBytes and keep the bytes in order")
    func order() throws {
        var sender = CreditedSender()
        let input = self.chunks([10, 3, 7])
        sender.take(input, byteCount: 20)
        try sender.grant(Int32.max)
        var out: [UInt8] = []
        while let message = sender.nextMessage(maxBytes: 4) {
            #expect(message.readableBytes <= 4)
            out += message.readableBytesView
        }
        #expect(out == input.flatMap { Array($0.readableBytesView) })
        #expect(sender.completeDelivery() == 20)
    }

    @Test("an early end reports exactly the bytes that left")
    func abandon() throws {
        var sender = CreditedSender()
        #expect(sender.abandonDelivery() == nil)
        sender.take(self.chunks([64]), byteCount: 64)
        try sender.grant(40)
        _ = sender.nextMessage(maxBytes: 16)
        _ = sender.nextMessage(maxBytes: 16)
        #expect(sender.abandonDelivery() == 32)
        #expect(!sender.holdsDelivery && !sender.hasUnsentBytes)
        #expect(sender.credit == 8)
    }

    @Test("a grant of zero or less is refused")
    func badGrant() {
        var sender = CreditedSender()
        #expect(throws: CreditedSender.GrantError.notPositive(0)) { try sender.grant(0) }
        #expect(throws: CreditedSender.GrantError.notPositive(-5)) { try sender.grant(-5) }
        #expect(sender.credit == 0)
    }
}
