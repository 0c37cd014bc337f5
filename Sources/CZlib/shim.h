// zlib (Debian's zlib1g-dev) for SPDY/3 header compression.
#ifndef EXECSTREAM_CZLIB_SHIM_H
#define EXECSTREAM_CZLIB_SHIM_H
#include <zlib.h>

// deflateInit/inflateInit are macros; these make them callable from Swift.
static inline int execstream_deflate_init(z_stream *stream, int level) {
    return deflateInit(stream, level);
}

static inline int execstream_inflate_init(z_stream *stream) {
    return inflateInit(stream);
}
#endif
