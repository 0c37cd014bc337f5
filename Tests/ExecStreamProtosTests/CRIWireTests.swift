import ExecStreamProtos
import Foundation
import SwiftProtobuf
import Testing

/// The CRI subset keeps upstream's field numbers (PROTOCOLS.md §1): a wrong number would be a
/// silent incompatibility with crictl and the kubelet, so the bytes are checked directly.
@Suite("CRI runtime.v1 wire contract")
struct CRIWireTests {
    @Test("ExecRequest: tty 3, stdin 4, stdout 5, stderr 6")
    func execRequest() throws {
        let request = Runtime_V1_ExecRequest.with {
            $0.containerID = "c"
            $0.cmd = ["ls"]
            $0.tty = true
            $0.stdin = true
            $0.stdout = true
            $0.stderr = true
        }
        #expect(try Array(request.serializedBytes() as [UInt8]) == [0x0A, 1, 0x63, 0x12, 2, 0x6C, 0x73, 0x18, 1, 0x20, 1, 0x28, 1, 0x30, 1])
    }

    @Test("AttachRequest: stdin 2, tty 3 - the order differs from ExecRequest")
    func attachRequest() throws {
        let request = try Runtime_V1_AttachRequest(serializedBytes: [0x0A, 1, 0x63, 0x10, 1, 0x18, 0])
        #expect(request.containerID == "c")
        #expect(request.stdin)
        #expect(!request.tty)
    }

    @Test("ExecSyncResponse: stdout 1, stderr 2, exit_code 3")
    func execSyncResponse() throws {
        let response = Runtime_V1_ExecSyncResponse.with {
            $0.stdout = Data("o".utf8)
            $0.stderr = Data("e".utf8)
            $0.exitCode = 42
        }
        #expect(try Array(response.serializedBytes() as [UInt8]) == [0x0A, 1, 0x6F, 0x12, 1, 0x65, 0x18, 42])
    }

    @Test("VersionResponse fields 1-4 and ContainerStatus exit_code 7")
    func versionAndStatus() throws {
        let version = Runtime_V1_VersionResponse.with {
            $0.version = "a"
            $0.runtimeName = "b"
            $0.runtimeVersion = "c"
            $0.runtimeApiVersion = "d"
        }
        #expect(try Array(version.serializedBytes() as [UInt8]) == [0x0A, 1, 0x61, 0x12, 1, 0x62, 0x1A, 1, 0x63, 0x22, 1, 0x64])
        let status = Runtime_V1_ContainerStatus.with { $0.exitCode = 1 }
        #expect(try Array(status.serializedBytes() as [UInt8]) == [0x38, 1])
    }

    @Test("method paths are upstream's", arguments: [
        (Runtime_V1_RuntimeService.Method.Version.descriptor.fullyQualifiedMethod, "runtime.v1.RuntimeService/Version"),
        (Runtime_V1_RuntimeService.Method.Exec.descriptor.fullyQualifiedMethod, "runtime.v1.RuntimeService/Exec"),
        (Runtime_V1_RuntimeService.Method.ExecSync.descriptor.fullyQualifiedMethod, "runtime.v1.RuntimeService/ExecSync"),
        (Runtime_V1_ImageService.Method.ImageFsInfo.descriptor.fullyQualifiedMethod, "runtime.v1.ImageService/ImageFsInfo"),
    ])
    func methodPaths(actual: String, expected: String) {
        #expect(actual == expected)
    }
}
