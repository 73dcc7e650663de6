# bench/peers.sh — sourced by tests/run.sh and bench/run.sh: detects the benchmark peers.
# Sets PEER_CFLAGS, PEER_LIBS and PEER_MISSING (one "name: apt-get install pkg" per line).
PEER_CFLAGS=""
PEER_LIBS=""
PEER_MISSING=""
_cc=${CC:-cc}
_peer_try() { # flags... : does a trivial program build with these flags?
    printf 'int main(void){return 0;}\n' > "${BUILD:-build}/peerprobe.c"
    $_cc "${BUILD:-build}/peerprobe.c" -o "${BUILD:-build}/peerprobe" "$@" >/dev/null 2>&1
}
mkdir -p "${BUILD:-build}"
if [ -f /usr/include/uthash.h ]; then PEER_CFLAGS="$PEER_CFLAGS -DPK_HAVE_UTHASH"
else PEER_MISSING="${PEER_MISSING}uthash LRU (cache peer): apt-get install uthash-dev
"; fi
if pkg-config --exists apr-util-1 apr-1 2>/dev/null && _peer_try $(pkg-config --cflags --libs apr-util-1 apr-1); then
    PEER_CFLAGS="$PEER_CFLAGS -DPK_HAVE_APR $(pkg-config --cflags apr-util-1 apr-1)"
    PEER_LIBS="$PEER_LIBS $(pkg-config --libs apr-util-1 apr-1)"
else PEER_MISSING="${PEER_MISSING}APR apr_reslist (resource pool peer): apt-get install libaprutil1-dev pkg-config
"; fi
if _peer_try -fopenmp; then PEER_CFLAGS="$PEER_CFLAGS -DPK_HAVE_OPENMP -fopenmp"
else PEER_MISSING="${PEER_MISSING}OpenMP (executor peer): apt-get install gcc (libgomp)
"; fi
if _peer_try -lck; then PEER_CFLAGS="$PEER_CFLAGS -DPK_HAVE_CK"; PEER_LIBS="$PEER_LIBS -lck"
else PEER_MISSING="${PEER_MISSING}Concurrency Kit: apt-get install libck-dev
"; fi
[ -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ] || ls /usr/lib/*/libjemalloc.so.2 >/dev/null 2>&1 ||
    PEER_MISSING="${PEER_MISSING}jemalloc (allocator peer): apt-get install libjemalloc2
"
[ -e /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 ] || ls /usr/lib/*/libmimalloc.so.2 >/dev/null 2>&1 ||
    PEER_MISSING="${PEER_MISSING}mimalloc (allocator peer): apt-get install libmimalloc2.0
"
command -v memcached >/dev/null 2>&1 ||
    PEER_MISSING="${PEER_MISSING}memcached (scenario server): apt-get install memcached
"
command -v hyperfine >/dev/null 2>&1 ||
    PEER_MISSING="${PEER_MISSING}hyperfine (whole-program timing): apt-get install hyperfine
"
