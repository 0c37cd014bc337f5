// zlib (Debian's zlib1g-dev) for SPDY/3 header compression.
#ifndef EXECSTREAM_CZLIB_SHIM_H
#define EXECSTREAM_CZLIB_SHIM_H
#include <zlib.h>

// deflateInit/inflateInit are macros; these make them callable from Swift.
//
// The deflate stream is small: a 2 KiB window and the smallest hash table (windowBits 11,
// memLevel 1) take about 9 KiB where the defaults take about 320 KiB, 128 KiB of it zeroed at
// once, per SPDY connection. The server compresses only its (empty) SYN_REPLY header blocks, and
// an inflater reads any window up to 32 KiB.
static inline int execstream_deflate_init(z_stream *stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 11, 1, Z_DEFAULT_STRATEGY);
}

static inline int execstream_inflate_init(z_stream *stream) {
    return inflateInit(stream);
}
#endif
