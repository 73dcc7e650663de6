#!/usr/bin/env bash
# Builds a tiny consumer of pk three ways, as users do:
#   1. a copied header next to the program;
#   2. the repo as a git submodule of a throwaway repo, CMake add_subdirectory + pk::pk;
#   2b. `cmake --install`, then find_package(pk) in another CMake project;
#   3. `make install PREFIX=…` then pkg-config --cflags pk.
# Prints "  ok NAME", "  skip NAME (why)" or "  FAIL NAME" per way. Missing tools skip.
set -u
cd "$(dirname "$0")/.."
TOP=$(pwd)
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
have() { command -v "$1" >/dev/null 2>&1; }

# The consumer uses whichever headers exist, one implementation each.
headers=$(cd "$TOP" && ls pk_*.h 2>/dev/null)
if [ -z "$headers" ]; then echo "  skip packaging (no headers yet)"; exit 0; fi
{
    for h in $headers; do
        H=$(echo "${h#pk_}" | sed 's/\.h$//' | tr a-z A-Z)
        printf '#define PK_%s_IMPLEMENTATION\n#include "%s"\n' "$H" "$h"
    done
    printf '#include <stdio.h>\nint main(void){ puts("consumer ok"); return 0; }\n'
} > "$tmp/main.c"

# 1. copied header
mkdir -p "$tmp/copy"
cp $headers "$tmp/copy/" && cp "$tmp/main.c" "$tmp/copy/"
if (cd "$tmp/copy" && $CC -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -pthread main.c -o app -lm && ./app) >"$tmp/copy.log" 2>&1; then
    echo "  ok copied header"
else
    echo "  FAIL copied header"; cat "$tmp/copy.log"
fi

# 2. git submodule + add_subdirectory
if have git && have cmake; then
    src="$tmp/pksrc"
    mkdir -p "$src"
    # The submodule is a snapshot of the working tree, so uncommitted edits are tested too.
    (cd "$TOP" && cp $headers CMakeLists.txt "$src/")
    (
        set -e
        cd "$src" && git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm pk
        mkdir -p "$tmp/app" && cd "$tmp/app" && git init -q
        git -c protocol.file.allow=always submodule add -q "$src" third_party/pk
        cp "$tmp/main.c" main.c
        cat > CMakeLists.txt <<'CM'
cmake_minimum_required(VERSION 3.10)
project(consumer C)
add_subdirectory(third_party/pk)
add_executable(app main.c)
target_link_libraries(app PRIVATE pk::pk m)
CM
        cmake -S . -B b -DCMAKE_C_COMPILER="$CC" >/dev/null
        cmake --build b >/dev/null
        ./b/app
    ) >"$tmp/sub.log" 2>&1 && echo "  ok git submodule + cmake add_subdirectory" ||
        { echo "  FAIL git submodule + cmake add_subdirectory"; tail -n 20 "$tmp/sub.log"; }
else
    echo "  skip git submodule + cmake (apt-get install git cmake)"
fi

# 2b. cmake --install, then find_package(pk) from another project
if have git && have cmake && [ -d "${src:-}" ]; then
    (
        set -e
        cmake -S "$src" -B "$tmp/cmb" -DCMAKE_C_COMPILER="$CC" -DCMAKE_INSTALL_PREFIX="$tmp/cmprefix" >/dev/null
        cmake --install "$tmp/cmb" >/dev/null
        mkdir -p "$tmp/fp" && cd "$tmp/fp" && cp "$tmp/main.c" main.c
        cat > CMakeLists.txt <<'CM'
cmake_minimum_required(VERSION 3.10)
project(consumer C)
find_package(pk 0.1 REQUIRED)
add_executable(app main.c)
target_link_libraries(app PRIVATE pk::pk m)
CM
        cmake -S . -B b -DCMAKE_C_COMPILER="$CC" -DCMAKE_PREFIX_PATH="$tmp/cmprefix" >/dev/null
        cmake --build b >/dev/null
        ./b/app
    ) >"$tmp/fp.log" 2>&1 && echo "  ok cmake --install + find_package(pk)" ||
        { echo "  FAIL cmake --install + find_package(pk)"; tail -n 20 "$tmp/fp.log"; }
fi

# 3. make install + pkg-config
if have pkg-config && have make; then
    if (make -s -C "$TOP" install PREFIX="$tmp/prefix" &&
        export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" &&
        cd "$tmp" && $CC -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Werror $(pkg-config --cflags pk) main.c -o app_pc $(pkg-config --libs pk) -lm &&
        ./app_pc) >"$tmp/pc.log" 2>&1; then
        echo "  ok make install + pkg-config"
    else
        echo "  FAIL make install + pkg-config"; tail -n 20 "$tmp/pc.log"
    fi
else
    echo "  skip make install + pkg-config (apt-get install pkg-config)"
fi
