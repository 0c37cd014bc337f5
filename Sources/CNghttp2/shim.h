// The nghttp2 C API as Debian's libnghttp2-dev 1.52 ships it.
// Use the 1.52 entry points (nghttp2_session_mem_recv/mem_send, nghttp2_data_provider):
// the *2 variants arrived in 1.60. See ../../../shared/design/ARCHITECTURE.md.
#ifndef EXECSTREAM_CNGHTTP2_SHIM_H
#define EXECSTREAM_CNGHTTP2_SHIM_H
#include <nghttp2/nghttp2.h>
#endif
