#!/usr/bin/env bash
# Regenerates the committed Swift code for every .proto under Protos/.
#
# Needs Debian's protoc (apt protobuf-compiler). The two plugins, protoc-gen-swift and
# protoc-gen-grpc-swift-2, are built once from the mirrored swift-protobuf and grpc-swift-protobuf
# packages (dependencies of this package) into .build-protoc-plugins/, which git ignores.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v protoc >/dev/null || { echo "protoc is missing: apt-get install protobuf-compiler" >&2; exit 1; }

scratch=.build-protoc-plugins
bin="$scratch/release"
if [[ ! -x "$bin/protoc-gen-swift" || ! -x "$bin/protoc-gen-grpc-swift-2" ]]; then
    swift build -c release --scratch-path "$scratch" --product protoc-gen-swift
    swift build -c release --scratch-path "$scratch" --product protoc-gen-grpc-swift-2
fi

# generate OUTPUT_DIR PROTO...: messages and gRPC stubs, public, paths dropped.
generate() {
    local output=$1
    shift
    mkdir -p "$output"
    protoc --proto_path=Protos \
        --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
        --plugin=protoc-gen-grpc-swift="$bin/protoc-gen-grpc-swift-2" \
        --swift_out="$output" --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
        --grpc-swift_out="$output" --grpc-swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
        "$@"
}

generate Sources/ExecStreamProtos/Generated Protos/grpc/health/v1/health.proto
generate Sources/ExecStreamProtos/Generated Protos/runtime/v1/api.proto
generate Sources/ExecStreamProtos/Generated Protos/containerd/types/transfer/streaming.proto
generate Sources/ExecStreamProtos/Generated Protos/containerd/services/streaming/v1/streaming.proto
generate Sources/ExecStreamProtos/Generated Protos/execstream/v1/containers.proto
echo "generated: $(git status --short -- Sources/*/Generated | wc -l) changed file(s)"
