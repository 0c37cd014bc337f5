public import ExecStreamCore
public import ExecStreamHTTP2
import Foundation
import NIOCore
import NIOSSL

/// How a client speaks TLS to a server's TCP listener: the CA its certificate is checked against
/// (the system's roots without one), and for mutual TLS a certificate and key of its own.
public struct ClientTLSConfiguration: Hashable, Sendable {
    /// CA certificates (PEM) that sign the server's certificate.
    public var caFile: String?
    /// The client's certificate chain (PEM), for listeners that require one.
    public var certificateFile: String?
    /// The client's private key (PEM).
    public var keyFile: String?
    /// The name the server's certificate must carry; by default the host connected to (an IP
    /// address is checked against the certificate's IP addresses).
    public var serverName: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.serverName = serverName
    }

    /// A TLS context offering ALPN `h2`, TLS 1.2 or newer, verifying the server.
    func makeContext() throws(ClientError) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["h2"]
        do {
            if let caFile = self.caFile {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            }
            switch (self.certificateFile, self.keyFile) {
            case (let certificate?, let key?):
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            case (nil, nil):
                break
            case (nil, _?), (_?, nil):
                throw ClientError(code: .invalidArgument, message: "a client certificate needs both --tls-cert and --tls-key")
            }
            return try NIOSSLContext(configuration: configuration)
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(code: .invalidArgument, message: "cannot load the TLS files: \(error)")
        }
    }
}

extension HTTP2ClientConnection {
    /// Connects to `address`; over TLS (ALPN `h2`) when `tls` is given, which a unix socket
    /// does not need.
    public static func connect(to address: ListenAddress, tls: ClientTLSConfiguration?) async throws -> HTTP2ClientConnection {
        guard let tls, case .tcp(let host, _) = address else {
            return try await Self.connect(to: address)
        }
        let context = try tls.makeContext()
        // SNI and name checks take a host name; an IP address is checked against the
        // certificate's IP addresses instead.
        let serverName = tls.serverName ?? (Self.isIPAddress(host) ? nil : host)
        return try await Self.connect(to: address) { pipeline in
            try pipeline.addHandler(try NIOSSLClientHandler(context: context, serverHostname: serverName))
        }
    }

    /// Connects to the listener a streaming URL names: `https://` over TLS (with `tls`, or the
    /// system's roots), `http://` in plain TCP.
    public static func connect(toStreamingURL url: String, tls: ClientTLSConfiguration? = nil) async throws -> HTTP2ClientConnection {
        guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host,
            let port = components.port ?? (scheme == "https" ? 443 : 80) as Int?
        else {
            throw ClientError(code: .protocolError, message: "the server returned an invalid streaming URL: \(url)")
        }
        let address = ListenAddress.tcp(host: host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: port)
        return try await Self.connect(to: address, tls: scheme == "https" ? (tls ?? ClientTLSConfiguration()) : nil)
    }

    private static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}
