@testable import ExecStreamHTTP2
import GRPCCore
import Testing

@Suite("gRPC transport: metadata and paths")
struct GRPCTransportHelperTests {
    @Test("request headers become metadata: -bin values decoded (padded or not), reserved fields left out")
    func metadataFromHeaders() {
        let headers: HTTP2Headers = [
            "content-type": "application/grpc", "te": "trailers", "grpc-timeout": "1S", "grpc-encoding": "identity",
            "user-agent": "grpc-python/1.60", "x-trace-bin": "AAEC", "x-raw-bin": "AAE", "x-key": "v",
        ]
        let metadata = GRPCHTTP2ServerTransport.metadata(from: headers)
        #expect(Array(metadata[binaryValues: "x-trace-bin"]) == [[0, 1, 2]])
        #expect(Array(metadata[binaryValues: "x-raw-bin"]) == [[0, 1]])
        #expect(Array(metadata[stringValues: "x-key"]) == ["v"])
        #expect(Array(metadata[stringValues: "user-agent"]) == ["grpc-python/1.60"])
        for reserved in ["content-type", "te", "grpc-timeout", "grpc-encoding"] {
            #expect(Array(metadata[stringValues: reserved]).isEmpty, "\(reserved) is the transport's, not metadata")
        }
    }

    @Test("metadata becomes header fields: -bin values base64 without padding")
    func headerFieldsFromMetadata() {
        var metadata = Metadata()
        metadata.addBinary([0, 1], forKey: "x-raw-bin")
        metadata.addString("v", forKey: "X-Key")
        let fields = GRPCHTTP2ServerTransport.headerFields(from: metadata).map { "\($0.name)=\($0.value)" }
        #expect(fields == ["x-raw-bin=AAE", "x-key=v"])
    }

    @Test("status fields: code, and a percent-encoded message only when there is one")
    func statusFields() {
        #expect(GRPCHTTP2ServerTransport.statusFields(Status(code: .ok, message: "")).map(\.value) == ["0"])
        let fields = GRPCHTTP2ServerTransport.statusFields(Status(code: .notFound, message: "no ✓"))
        #expect(fields.map { "\($0.name)=\($0.value)" } == ["grpc-status=5", "grpc-message=no %E2%9C%93"])
    }

    @Test("method paths", arguments: [
        ("/grpc.health.v1.Health/Check", "grpc.health.v1.Health", "Check"),
        ("/runtime.v1.RuntimeService/Exec", "runtime.v1.RuntimeService", "Exec"),
    ])
    func validPaths(path: String, service: String, method: String) throws {
        let descriptor = try #require(GRPCHTTP2ServerTransport.methodDescriptor(path: path))
        #expect(descriptor.service.fullyQualifiedService == service)
        #expect(descriptor.method == method)
    }

    @Test("invalid method paths", arguments: ["", "/", "/Service", "//Method", "/Service/", "Service/Method", "/a/b/c"])
    func invalidPaths(path: String) {
        #expect(GRPCHTTP2ServerTransport.methodDescriptor(path: path) == nil)
    }
}
