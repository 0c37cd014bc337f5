import ExecStreamCore
import ExecStreamServer
import NIOCore
import Testing

@Suite("The --config file")
struct ConfigurationFileTests {
    @Test("every section applies over the defaults")
    func fullFile() throws {
        let file = try ConfigurationFile.parse(
            """
            listen: ["127.0.0.1:9000", "[::1]:9000"]
            criSocket: /tmp/x.sock
            advertiseAddress: 10.0.0.5
            execSyncMaxOutputBytes: 1024
            sessions: {postExitDrainSeconds: 0.5, killProcessGroupOnDisconnect: false}
            http2: {keepaliveIntervalSeconds: 5, maxConcurrentStreams: 7, maxHeaderListSize: 4096}
            grpc: {maxMessageBytes: 2048}
            containers:
              - id: web
                name: web-1
                labels: {app: web, tier: front}
                isolation: namespaces
                env: ["A=b"]
                workingDir: /srv
                user: 1000
                group: 1001
                main: {command: ["/bin/sh"], tty: true, stdin: true, stdinOnce: true}
            """
        )
        var configuration = ServerConfiguration(listenAddresses: [])
        try file.apply(to: &configuration)
        let addresses = try file.listenAddresses()
        #expect(addresses.tcp == [.tcp(host: "127.0.0.1", port: 9000), .tcp(host: "::1", port: 9000)])
        #expect(addresses.unixSocket == .some("/tmp/x.sock"))
        #expect(configuration.advertiseHost == "10.0.0.5")
        #expect(configuration.execSyncOutputLimit == 1024)
        #expect(configuration.sessions == SessionPolicy(postExitDrain: .milliseconds(500), killProcessGroupWhenClientVanishes: false))
        #expect(configuration.http2.keepaliveInterval == .seconds(5))
        #expect(configuration.http2.maxConcurrentStreams == 7)
        #expect(configuration.http2.maxHeaderListSize == 4096)
        #expect(configuration.grpc.maxMessageBytes == 2048)
        #expect(configuration.containers.map(\.id) == ["demo", "web"])
        let web = configuration.containers[1]
        #expect(web.name == "web-1")
        #expect(web.labels == ["app": "web", "tier": "front"])
        #expect(web.isolation == .namespaces)
        #expect(web.environment == ["A=b"])
        #expect(web.workingDirectory == "/srv")
        #expect(web.userID == 1000 && web.groupID == 1001)
        #expect(web.mainProcess == MainProcessSpec(command: ["/bin/sh"], tty: true, stdin: true, stdinOnce: true))
    }

    @Test("the trust settings: control listeners, the socket group and TLS files")
    func trustSettings() throws {
        let file = try ConfigurationFile.parse(
            """
            controlListen: ["10.0.0.5:10351"]
            socketGroup: execstream
            tls: {certFile: /etc/t.crt, keyFile: /etc/t.key, clientCAFile: /etc/c.crt, controlClientCAFile: /etc/o.crt}
            """
        )
        var configuration = ServerConfiguration(listenAddresses: [])
        try file.apply(to: &configuration)
        #expect(configuration.controlListenAddresses == [.tcp(host: "10.0.0.5", port: 10351)])
        #expect(configuration.unixSocketGroup == .name("execstream"))
        #expect(
            configuration.tls
                == TLSFiles(certificateChainFile: "/etc/t.crt", privateKeyFile: "/etc/t.key", clientCAFile: "/etc/c.crt", controlClientCAFile: "/etc/o.crt")
        )
        try ConfigurationFile.parse("socketGroup: \"994\"").apply(to: &configuration)
        #expect(configuration.unixSocketGroup == .id(994))
        #expect(throws: ServerError.self) { try ConfigurationFile.parse("tls: {certFile: /a}") }
        #expect(throws: ServerError.self) { try ConfigurationFile.parse("tls: {certFile: /a, keyFile: /b, clientCA: /c}") }
    }

    @Test("an empty file changes nothing; criSocket \"\" means no unix socket")
    func emptyAndNoSocket() throws {
        var configuration = ServerConfiguration(listenAddresses: [])
        try ConfigurationFile.parse("").apply(to: &configuration)
        #expect(configuration.containers == [ServerConfiguration.demoContainer])
        let addresses = try ConfigurationFile.parse("criSocket: \"\"").listenAddresses()
        #expect(addresses.tcp == nil)
        #expect(addresses.unixSocket == .some(nil))
    }

    @Test("a file may redefine demo")
    func ownDemo() throws {
        var configuration = ServerConfiguration(listenAddresses: [])
        try ConfigurationFile.parse("containers: [{id: demo}]").apply(to: &configuration)
        #expect(configuration.containers.count == 1)
        #expect(configuration.containers[0].mainProcess == nil)
    }

    @Test(
        "mistakes are one clear line",
        arguments: [
            ("lisen: []", "unknown key \"lisen\""),
            ("http2: {maxStreams: 3}", "unknown key \"maxStreams\" in http2"),
            ("containers: [{id: a, mian: {command: [x]}}]", "unknown key \"mian\" in containers[]"),
            ("containers: [{name: a}]", "containers[0].id is required"),
            ("http2: {maxConcurrentStreams: many}", "http2.maxConcurrentStreams"),
            ("listen: [nonsense]", "listen: a TCP address looks like HOST:PORT"),
            ("containers: [{id: a, isolation: vm}]", "isolation must be host or namespaces"),
            ("containers: [{id: a, main: {command: []}}]", "command must not be empty"),
            ("sessions: {postExitDrainSeconds: -1}", "sessions.postExitDrainSeconds must be 0 or more seconds"),
        ]
    )
    func mistakes(text: String, expected: String) {
        let error = #expect(throws: ServerError.self) {
            let file = try ConfigurationFile.parse(text, source: "test.yaml")
            var configuration = ServerConfiguration(listenAddresses: [])
            try file.apply(to: &configuration)
            _ = try file.listenAddresses()
        }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
    }
}

@Suite("Configuration limits")
struct ConfigurationLimitTests {
    @Test(
        "a duration or limit the server cannot carry is refused before anything starts, not a crash",
        arguments: [
            ("http2: {keepaliveIntervalSeconds: 1e300}", "http2.keepaliveIntervalSeconds must be 0 or more seconds"),
            ("sessions: {postExitDrainSeconds: .nan}", "sessions.postExitDrainSeconds must be 0 or more seconds"),
            ("http2: {maxConcurrentStreams: -1}", "concurrent streams must be between 1 and 4294967295, not -1"),
            ("http2: {maxHeaderListSize: 5000000000}", "header list size must be between 1024 and 4294967295"),
            ("grpc: {maxMessageBytes: 0}", "gRPC maximum message size must be between 1024"),
            // Found by the configuration-file fuzz target: Yams trapped on this base-60 integer.
            ("grpc: {maxMessageBytes: 922337203618547758:07}", "a base-60 number (a:b) too large for an integer"),
        ]
    )
    func refused(text: String, expected: String) {
        let error = #expect(throws: ServerError.self) {
            let file = try ConfigurationFile.parse(text, source: "test.yaml")
            var configuration = ServerConfiguration(listenAddresses: [])
            try file.apply(to: &configuration)
            try configuration.validate()
        }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
    }
}
