import ExecStreamServer

/// The YAML config file: any text either parses into a configuration that can be applied, or
/// fails with a `ServerError`, never a crash; what applies then passes or fails validation.
enum ConfigurationFuzzing {
    static func parse(_ bytes: [UInt8]) {
        guard let text = String(validating: bytes, as: UTF8.self) else { return }
        guard let file = try? ConfigurationFile.parse(text, source: "fuzz input") else { return }
        var configuration = ServerConfiguration(listenAddresses: [])
        guard (try? file.apply(to: &configuration)) != nil else { return }
        _ = try? file.listenAddresses()
        _ = try? configuration.validate()
    }
}
