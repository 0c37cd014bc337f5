import Logging
import Testing

@testable import ExecStreamServer

@Suite("Log lines: JSON a parser accepts, text for people")
struct ServerLogHandlerTests {
    @Test("a JSON line escapes what JSON needs escaped and keeps numbers and booleans typed")
    func jsonLine() {
        let line = ServerLogHandler.jsonLine(
            time: "2026-11-25T00:00:00.000Z",
            level: .notice,
            label: "execstream",
            message: "said \"hi\"\n\tand\u{01}left",
            metadata: ["bytes": .stringConvertible(20), "audit": .stringConvertible(true), "peer": "unix uid=0", "list": ["a", "b"]]
        )
        #expect(
            line
                == #"{"time":"2026-11-25T00:00:00.000Z","level":"notice","logger":"execstream","message":"said \"hi\"\n\tand\u0001left","#
                + #""audit":true,"bytes":20,"list":["a","b"],"peer":"unix uid=0"}"#
        )
    }

    @Test("metadata cannot overwrite the fixed fields of a JSON line")
    func fixedFieldsWin() {
        let line = ServerLogHandler.jsonLine(time: "t", level: .info, label: "l", message: "m", metadata: ["message": "forged", "level": "critical"])
        #expect(line == #"{"time":"t","level":"info","logger":"l","message":"m"}"#)
    }

    @Test("a text line: time, level, logger, message, then sorted key=value pairs")
    func textLine() {
        let line = ServerLogHandler.textLine(time: "t", level: .debug, label: "execstream", message: "control call", metadata: ["peer": "unix uid=0", "method": "X"])
        #expect(line == "t debug execstream: control call method=X peer=unix uid=0")
    }

    @Test("an unknown log level is an error that lists the known ones")
    func unknownLevel() throws {
        #expect(try Logger.Level(parsingLogLevel: "notice") == .notice)
        let error = #expect(throws: ServerError.self) { try Logger.Level(parsingLogLevel: "verbose") }
        #expect(error?.message == #"unknown log level "verbose" (one of trace, debug, info, notice, warning, error, critical)"#)
    }
}
