import ExecStreamCore
import NIOCore
import NIOSSL
import Synchronization

/// The TLS contexts of the TCP listeners: one for the data plane (a client certificate required
/// only with `clientCAFile`) and one for the control plane (a client certificate signed by
/// `controlClientCAFile`, always required).
///
/// Both speak TLS 1.2 or newer and offer ALPN `h2` and `http/1.1`, so gRPC, native HTTP/2,
/// RFC 8441 and the WebSocket and SPDY upgrades all work over TLS. `reload()` reads every file
/// again and swaps the contexts whole: a connection takes the context current when it is
/// accepted, so open sessions keep theirs and new handshakes see the new certificate. A reload
/// that fails keeps the previous contexts.
final class ServerTLS: Sendable {
    private struct Contexts {
        var data: NIOSSLContext
        var control: NIOSSLContext?
    }

    private let files: TLSFiles
    private let contexts: Mutex<Contexts>

    /// The ALPN protocols offered, in order of preference.
    static let applicationProtocols = ["h2", "http/1.1"]

    /// Loads every file; `needsControl` makes the control client CA required.
    init(files: TLSFiles, needsControl: Bool) throws(ServerError) {
        if needsControl && files.controlClientCAFile == nil {
            throw ServerError(
                code: .invalidConfiguration,
                message: "a control-plane TCP listener needs a CA for client certificates (--control-client-ca, tls.controlClientCAFile)"
            )
        }
        self.files = files
        self.contexts = Mutex(try Self.load(files))
    }

    /// The context for a new connection on a data-plane (`control == false`) or control-plane listener.
    func context(control: Bool) -> NIOSSLContext {
        self.contexts.withLock { contexts in
            control ? (contexts.control ?? contexts.data) : contexts.data
        }
    }

    /// Whether listeners of that plane ask clients for a certificate (and refuse those without).
    func requiresClientCertificates(control: Bool) -> Bool {
        control || self.files.clientCAFile != nil
    }

    /// Reads every file again and, if all of them load, uses them for new connections.
    func reload() throws(ServerError) {
        let loaded = try Self.load(self.files)
        self.contexts.withLock { $0 = loaded }
    }

    private static func load(_ files: TLSFiles) throws(ServerError) -> Contexts {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificateChainFile)
        } catch {
            throw ServerError(code: .invalidConfiguration, message: "cannot load the TLS certificate \(files.certificateChainFile): \(error)")
        }
        guard !chain.isEmpty else {
            throw ServerError(code: .invalidConfiguration, message: "the TLS certificate file \(files.certificateChainFile) holds no certificate")
        }
        do {
            key = try NIOSSLPrivateKey(file: files.privateKeyFile, format: .pem)
        } catch {
            throw ServerError(code: .invalidConfiguration, message: "cannot load the TLS private key \(files.privateKeyFile): \(error)")
        }
        let data = try Self.context(chain: chain, key: key, clientCAFile: files.clientCAFile, files: files)
        let control = try files.controlClientCAFile.map { path throws(ServerError) in
            try Self.context(chain: chain, key: key, clientCAFile: path, files: files)
        }
        return Contexts(data: data, control: control)
    }

    private static func context(
        chain: [NIOSSLCertificate],
        key: NIOSSLPrivateKey,
        clientCAFile: String?,
        files: TLSFiles
    ) throws(ServerError) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = Self.applicationProtocols
        if let clientCAFile {
            let roots: [NIOSSLCertificate]
            do {
                roots = try NIOSSLCertificate.fromPEMFile(clientCAFile)
            } catch {
                throw ServerError(code: .invalidConfiguration, message: "cannot load the client CA \(clientCAFile): \(error)")
            }
            guard !roots.isEmpty else {
                throw ServerError(code: .invalidConfiguration, message: "the client CA file \(clientCAFile) holds no certificate")
            }
            // Required and verified against these roots only; client certificates name no host.
            configuration.trustRoots = .certificates(roots)
            configuration.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw ServerError(
                code: .invalidConfiguration,
                message: "cannot use the TLS certificate \(files.certificateChainFile) with the key \(files.privateKeyFile): \(error)"
            )
        }
    }
}

extension NIOSSLCertificate {
    /// The subject in RFC 4514 form (attribute types NIOSSL names; others as `OID`).
    var subjectDescription: String {
        let known: [(SSLCertificateNameType, String)] = [
            (.commonName, "CN"), (.organization, "O"), (.organizationalUnit, "OU"), (.country, "C"),
            (.state, "ST"), (.city, "L"), (.emailAddress, "emailAddress"), (.userId, "UID"),
        ]
        return DistinguishedName.rfc4514(
            self.subjectName.map { name in
                (type: known.first { $0.0 == name.type }?.1 ?? "OID", value: name.value)
            }
        )
    }
}
