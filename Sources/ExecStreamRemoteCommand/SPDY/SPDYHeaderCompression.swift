import CZlib
public import ExecStreamCore
public import NIOCore

/// The connection's deflate stream for the header blocks it sends: one per direction per
/// connection, for its whole life, seeded with the SPDY/3 dictionary, SYNC_FLUSHed after each
/// block (PROTOCOLS.md §3b). Not thread-safe: it lives with its connection's event loop.
public final class SPDYHeaderDeflater {
    private var stream = z_stream()

    public init() {
        let status = execstream_deflate_init(&self.stream, Z_DEFAULT_COMPRESSION)
        precondition(status == Z_OK, "deflateInit failed: \(status)")
        let dictionaryStatus = SPDY.headerDictionary.withUnsafeBufferPointer {
            deflateSetDictionary(&self.stream, $0.baseAddress, uInt($0.count))
        }
        precondition(dictionaryStatus == Z_OK, "deflateSetDictionary failed: \(dictionaryStatus)")
    }

    deinit {
        deflateEnd(&self.stream)
    }

    /// Compresses one header block.
    public func compress(_ headers: [(name: String, value: String)]) -> ByteBuffer {
        var input = Array(SPDYHeaderBlock.encode(headers).readableBytesView)
        var output = ByteBuffer()
        let chunk = 4096
        input.withUnsafeMutableBufferPointer { source in
            self.stream.next_in = source.baseAddress
            self.stream.avail_in = uInt(source.count)
            repeat {
                output.reserveCapacity(minimumWritableBytes: chunk)
                let written = output.writeWithUnsafeMutableBytes(minimumWritableBytes: chunk) { target in
                    self.stream.next_out = target.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    self.stream.avail_out = uInt(target.count)
                    let status = deflate(&self.stream, Z_SYNC_FLUSH)
                    precondition(status == Z_OK || status == Z_BUF_ERROR, "deflate failed: \(status)")
                    return target.count - Int(self.stream.avail_out)
                }
                _ = written
            } while self.stream.avail_out == 0
            self.stream.next_in = nil
        }
        return output
    }
}

/// The connection's inflate stream for the header blocks it receives (see `SPDYHeaderDeflater`).
public final class SPDYHeaderInflater {
    private var stream = z_stream()
    /// The most uncompressed bytes one block may expand to.
    public let maxBlockByteCount: Int

    public init(maxBlockByteCount: Int = 256 << 10) {
        self.maxBlockByteCount = maxBlockByteCount
        let status = execstream_inflate_init(&self.stream)
        precondition(status == Z_OK, "inflateInit failed: \(status)")
    }

    deinit {
        inflateEnd(&self.stream)
    }

    /// Decompresses one header block and decodes it. A block that is not valid zlib for this
    /// stream, names another dictionary, or expands past the limit is `malformedInput`.
    public func decompress(_ block: ByteBuffer) throws(ExecStreamError) -> [(name: String, value: String)] {
        var input = Array(block.readableBytesView)
        var output = ByteBuffer()
        var failure: ExecStreamError?
        input.withUnsafeMutableBufferPointer { source in
            self.stream.next_in = source.baseAddress
            self.stream.avail_in = uInt(source.count)
            defer { self.stream.next_in = nil }
            while self.stream.avail_in > 0 || self.stream.avail_out == 0 {
                guard output.readableBytes < self.maxBlockByteCount else {
                    failure = ExecStreamError(code: .messageTooLarge, message: "a SPDY header block expands past \(self.maxBlockByteCount) bytes")
                    return
                }
                var status: Int32 = Z_OK
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: 4096) { target in
                    self.stream.next_out = target.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    self.stream.avail_out = uInt(target.count)
                    status = inflate(&self.stream, Z_SYNC_FLUSH)
                    if status == Z_NEED_DICT {
                        status = SPDY.headerDictionary.withUnsafeBufferPointer {
                            inflateSetDictionary(&self.stream, $0.baseAddress, uInt($0.count))
                        }
                        if status == Z_OK {
                            status = inflate(&self.stream, Z_SYNC_FLUSH)
                        }
                    }
                    return target.count - Int(self.stream.avail_out)
                }
                guard status == Z_OK || status == Z_BUF_ERROR else {
                    failure = ExecStreamError(code: .malformedInput, message: "a SPDY header block does not inflate (zlib status \(status))")
                    return
                }
                if status == Z_BUF_ERROR && self.stream.avail_in == 0 { break }
            }
        }
        if let failure { throw failure }
        return try SPDYHeaderBlock.decode(output)
    }
}
