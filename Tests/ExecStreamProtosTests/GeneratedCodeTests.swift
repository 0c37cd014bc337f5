import ExecStreamProtos
import SwiftProtobuf
import Testing

/// The committed generated code matches the wire contract of the standard health protocol.
@Suite("Generated protobuf code")
struct GeneratedCodeTests {
    @Test("HealthCheckResponse{SERVING} is field 1, varint 1")
    func healthResponseWireBytes() throws {
        let response = Grpc_Health_V1_HealthCheckResponse.with { $0.status = .serving }
        #expect(try Array(response.serializedBytes() as [UInt8]) == [0x08, 0x01])
        #expect(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: [0x08, 0x03]).status == .serviceUnknown)
    }

    @Test("HealthCheckRequest{service} is field 1, length-delimited")
    func healthRequestWireBytes() throws {
        let request = Grpc_Health_V1_HealthCheckRequest.with { $0.service = "ab" }
        #expect(try Array(request.serializedBytes() as [UInt8]) == [0x0A, 0x02, 0x61, 0x62])
    }

    @Test("method descriptors carry the standard paths")
    func methodPaths() {
        #expect(Grpc_Health_V1_Health.Method.Check.descriptor.fullyQualifiedMethod == "grpc.health.v1.Health/Check")
        #expect(Grpc_Health_V1_Health.Method.Watch.descriptor.fullyQualifiedMethod == "grpc.health.v1.Health/Watch")
    }
}
