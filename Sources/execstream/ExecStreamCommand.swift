import ArgumentParser
import CNghttp2
import ExecStreamCore

/// The `execstream` command: the server (`serve`) and its clients (`exec`, `attach`, `exec-sync`).
@main
struct ExecStreamCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "execstream",
        abstract: "Run commands in containers and stream their IO over HTTP/2, WebSocket and SPDY.",
        version: ExecStreamVersion.runtimeVersion,
        subcommands: [ServeCommand.self, ExecCommand.self, AttachCommand.self, ExecSyncCommand.self, PortForwardCommand.self, ConsoleCommand.self, VersionCommand.self]
    )
}

/// `execstream version`: what this binary is and what it links.
struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Print the version of execstream and of the libraries it is built on."
    )

    func run() throws {
        print("\(ExecStreamVersion.runtimeName) \(ExecStreamVersion.runtimeVersion)")
        print("CRI API: \(ExecStreamVersion.criAPIVersion)")
        print("nghttp2: \(Self.nghttp2Version)")
    }

    /// The version of the nghttp2 library loaded at run time.
    static var nghttp2Version: String {
        guard let info = nghttp2_version(0), let text = info.pointee.version_str else { return "unknown" }
        return String(cString: text)
    }
}
