import ExecStreamCore
import NIOCore
import Testing

@Suite("SPDY stream set-up")
struct SPDYStreamSetupTests {
    private func headers(_ type: String) -> [(name: String, value: String)] {
        [("streamtype", type)]
    }

    private func machine(stdin: Bool = true, tty: Bool = false) -> SPDYStreamSetup {
        SPDYStreamSetup(
            expected: SPDYStreamSetup.expectedStreams(stdin: stdin, stdout: true, stderr: true, tty: tty, hasResizeStream: true),
            earlyStdinLimit: 8
        )
    }

    @Test("the streams a request implies: stderr merges into a TTY, resize comes with one")
    func expectedStreams() {
        #expect(SPDYStreamSetup.expectedStreams(stdin: false, stdout: true, stderr: true, tty: false, hasResizeStream: true) == [.error, .stdout, .stderr])
        #expect(SPDYStreamSetup.expectedStreams(stdin: true, stdout: true, stderr: true, tty: true, hasResizeStream: true) == [.error, .stdin, .stdout, .resize])
        #expect(SPDYStreamSetup.expectedStreams(stdin: true, stdout: true, stderr: true, tty: true, hasResizeStream: false) == [.error, .stdin, .stdout])
    }

    @Test("each expected stream is replied to; the session starts with the last, in any order")
    func startsWhenAllAreThere() {
        var setup = self.machine()
        #expect(setup.synStreamReceived(streamID: 1, headers: self.headers("stderr"), fin: false) == [.reply(streamID: 1)])
        #expect(setup.synStreamReceived(streamID: 3, headers: self.headers("error"), fin: false) == [.reply(streamID: 3)])
        #expect(setup.synStreamReceived(streamID: 5, headers: self.headers("stdout"), fin: false) == [.reply(streamID: 5)])
        #expect(!setup.isStarted)
        #expect(setup.synStreamReceived(streamID: 7, headers: self.headers("stdin"), fin: false) == [.reply(streamID: 7), .startSession])
        #expect(setup.isStarted)
        #expect(setup.streamID(of: .stdout) == 5)
        #expect(setup.streamID(of: .stderr) == 1)
    }

    @Test("stdin that comes before the start is held, reading pauses above the limit, and all of it is handed over at the start")
    func earlyStdin() {
        var setup = self.machine()
        _ = setup.synStreamReceived(streamID: 1, headers: self.headers("error"), fin: false)
        _ = setup.synStreamReceived(streamID: 3, headers: self.headers("stdin"), fin: false)
        #expect(setup.dataReceived(streamID: 3, fin: false, payload: ByteBuffer(string: "12345")) == [])
        #expect(setup.dataReceived(streamID: 3, fin: true, payload: ByteBuffer(string: "6789")) == [.pauseReading])
        _ = setup.synStreamReceived(streamID: 5, headers: self.headers("stdout"), fin: false)
        let actions = setup.synStreamReceived(streamID: 7, headers: self.headers("stderr"), fin: false)
        #expect(actions == [
            .reply(streamID: 7), .startSession, .stdin(ByteBuffer(string: "12345")), .stdin(ByteBuffer(string: "6789")), .stdinEnded,
            .resumeReading,
        ])
    }

    @Test("a SYN_STREAM with FIN on stdin is an empty stdin")
    func stdinFinOnOpen() {
        var setup = self.machine()
        _ = setup.synStreamReceived(streamID: 1, headers: self.headers("stdin"), fin: true)
        _ = setup.synStreamReceived(streamID: 3, headers: self.headers("error"), fin: false)
        _ = setup.synStreamReceived(streamID: 5, headers: self.headers("stdout"), fin: false)
        #expect(setup.synStreamReceived(streamID: 7, headers: self.headers("stderr"), fin: false) == [.reply(streamID: 7), .startSession, .stdinEnded])
        #expect(setup.dataReceived(streamID: 1, fin: false, payload: ByteBuffer(string: "late")) == [.resetStream(streamID: 1, status: SPDYStreamSetup.streamAlreadyClosed)])
    }

    @Test("a stream of no, an unknown, an unneeded or a repeated type, or with an even id, is reset; the set-up goes on")
    func refusedStreams() {
        var setup = self.machine(stdin: false)
        #expect(setup.synStreamReceived(streamID: 1, headers: [], fin: false) == [.resetStream(streamID: 1, status: SPDY.RstStatus.protocolError)])
        #expect(setup.synStreamReceived(streamID: 3, headers: self.headers("video"), fin: false) == [.resetStream(streamID: 3, status: SPDY.RstStatus.protocolError)])
        #expect(setup.synStreamReceived(streamID: 5, headers: self.headers("stdin"), fin: false) == [.resetStream(streamID: 5, status: SPDY.RstStatus.protocolError)])
        #expect(setup.synStreamReceived(streamID: 7, headers: self.headers("error"), fin: false) == [.reply(streamID: 7)])
        #expect(setup.synStreamReceived(streamID: 9, headers: self.headers("error"), fin: false) == [.resetStream(streamID: 9, status: SPDY.RstStatus.protocolError)])
        #expect(setup.synStreamReceived(streamID: 10, headers: self.headers("stdout"), fin: false) == [.resetStream(streamID: 10, status: SPDY.RstStatus.protocolError)])
        #expect(setup.synStreamReceived(streamID: 11, headers: self.headers("stdout"), fin: false) == [.reply(streamID: 11)])
        #expect(setup.synStreamReceived(streamID: 13, headers: self.headers("stderr"), fin: false) == [.reply(streamID: 13), .startSession])
        #expect(setup.synStreamReceived(streamID: 15, headers: self.headers("stdin"), fin: false) == [.resetStream(streamID: 15, status: SPDY.RstStatus.refusedStream)])
    }

    @Test("a stream id that does not grow is a session error: GOAWAY PROTOCOL_ERROR, then nothing more")
    func decreasingStreamID() {
        var setup = self.machine()
        _ = setup.synStreamReceived(streamID: 5, headers: self.headers("error"), fin: false)
        #expect(setup.synStreamReceived(streamID: 3, headers: self.headers("stdin"), fin: false)
            == [.goAwayAndClose(lastGoodStreamID: 5, status: SPDYStreamSetup.GoAwayStatus.protocolError)])
        #expect(setup.dataReceived(streamID: 5, fin: false, payload: ByteBuffer(string: "x")) == [])
        #expect(setup.creationTimedOut() == [])
    }

    @Test("DATA on a stream never opened and SYN_REPLY get RST_STREAM INVALID_STREAM; DATA on an output stream is ignored")
    func streamsNeverOpened() {
        var setup = self.machine()
        _ = setup.synStreamReceived(streamID: 1, headers: self.headers("stdout"), fin: false)
        #expect(setup.dataReceived(streamID: 99, fin: false, payload: ByteBuffer(string: "x")) == [.resetStream(streamID: 99, status: SPDY.RstStatus.invalidStream)])
        #expect(setup.headersReceived(streamID: 1, isReply: true) == [.resetStream(streamID: 1, status: SPDY.RstStatus.invalidStream)])
        #expect(setup.headersReceived(streamID: 41, isReply: false) == [.resetStream(streamID: 41, status: SPDY.RstStatus.invalidStream)])
        #expect(setup.headersReceived(streamID: 1, isReply: false) == [])
        #expect(setup.dataReceived(streamID: 1, fin: true, payload: ByteBuffer()) == [])
    }

    @Test("after the start: stdin, its FIN or reset, resize; client pings echoed")
    func routing() {
        var setup = self.machine(tty: true)
        for (id, type) in [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "resize")] {
            _ = setup.synStreamReceived(streamID: UInt32(id), headers: self.headers(type), fin: false)
        }
        #expect(setup.isStarted)
        #expect(setup.dataReceived(streamID: 3, fin: false, payload: ByteBuffer(string: "ls\n")) == [.stdin(ByteBuffer(string: "ls\n"))])
        #expect(setup.dataReceived(streamID: 7, fin: false, payload: ByteBuffer(string: "{}")) == [.resize(ByteBuffer(string: "{}"))])
        #expect(setup.pingReceived(id: 1) == [.pong(id: 1)])
        #expect(setup.pingReceived(id: 2) == [])
        #expect(setup.resetReceived(streamID: 3) == [.stdinEnded])
        #expect(setup.resetReceived(streamID: 3) == [])
        #expect(setup.sessionEnded() == [.goAwayAndClose(lastGoodStreamID: 7, status: SPDYStreamSetup.GoAwayStatus.ok)])
        #expect(setup.goAwayReceived() == [])
    }

    @Test("the creation timeout ends a set-up that is not complete, and nothing else")
    func creationTimeout() {
        var setup = self.machine()
        _ = setup.synStreamReceived(streamID: 1, headers: self.headers("error"), fin: false)
        #expect(setup.creationTimedOut() == [.goAwayAndClose(lastGoodStreamID: 1, status: SPDYStreamSetup.GoAwayStatus.ok)])
        var started = self.machine(stdin: false)
        for (id, type) in [(1, "error"), (3, "stdout"), (5, "stderr")] {
            _ = started.synStreamReceived(streamID: UInt32(id), headers: self.headers(type), fin: false)
        }
        #expect(started.creationTimedOut() == [])
    }

    @Test("the client's GOAWAY and malformed bytes end the connection once")
    func endings() {
        var leaving = self.machine()
        #expect(leaving.goAwayReceived() == [.close])
        #expect(leaving.malformedInput() == [])
        var broken = self.machine()
        #expect(broken.malformedInput() == [.goAwayAndClose(lastGoodStreamID: 0, status: SPDYStreamSetup.GoAwayStatus.protocolError)])
        #expect(broken.sessionEnded() == [])
    }
}
