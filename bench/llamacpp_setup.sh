# Sourced by bench/compare_llamacpp.sh and tools/make_llamacpp_fixtures.sh: fetches llama.cpp as
# the llama-cpp-python source distribution on PyPI vendors it, builds it (CPU only, GGML_NATIVE),
# and compiles our small programs against its C API (they are not part of our CMake build).
#   llamacpp_setup CACHE_DIR   needs $venv_python (tools/pinned_venv.sh); sets $llamacpp_src,
#                              $llamacpp_build (binaries and libraries in its bin/) and
#                              $ggml_version
#   llamacpp_tool NAME         compiles bench/NAME.cc (with bench/llamacpp_util.h) to
#                              $llamacpp_build/bin/NAME (when older)
#                              and prints that path
llamacpp_py_version=0.3.36  # the llama-cpp-python release whose vendored llama.cpp we build

llamacpp_setup() {
  local cache="$1"
  llamacpp_src="$cache/src-$llamacpp_py_version"
  llamacpp_build="$cache/build-$llamacpp_py_version"
  if [ ! -f "$llamacpp_src/.complete" ]; then
    echo "llama.cpp: fetching llama-cpp-python==$llamacpp_py_version (source distribution)" >&2
    rm -rf "$cache/dl" "$llamacpp_src"
    "$venv_python" -m pip download --quiet --no-deps --no-binary :all: -d "$cache/dl" \
      "llama-cpp-python==$llamacpp_py_version"
    mkdir -p "$llamacpp_src"
    tar -xzf "$cache/dl"/llama_cpp_python-*.tar.gz -C "$llamacpp_src" --strip-components=3 \
      "llama_cpp_python-$llamacpp_py_version/vendor/llama.cpp"
    touch "$llamacpp_src/.complete"
  fi
  if [ ! -x "$llamacpp_build/bin/llama-bench" ] || [ ! -x "$llamacpp_build/bin/llama-batched-bench" ] ||
    [ ! -x "$llamacpp_build/bin/llama-quantize" ]; then
    echo "llama.cpp: building (CPU, GGML_NATIVE) in $llamacpp_build" >&2
    cmake -S "$llamacpp_src" -B "$llamacpp_build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
      -DGGML_CUDA=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON \
      >"$cache/cmake.log" 2>&1 || { tail -20 "$cache/cmake.log" >&2; return 1; }
    cmake --build "$llamacpp_build" -j "$(nproc)" \
      --target llama-bench llama-batched-bench llama-quantize \
      >"$cache/build.log" 2>&1 || { tail -20 "$cache/build.log" >&2; return 1; }
  fi
  # The source distribution carries no git history: name llama.cpp by its ggml library version.
  ggml_version="$(find "$llamacpp_build/bin" -name 'libggml.so.*.*.*' | sed 's/.*libggml\.so\.//' | head -1)"
}

llamacpp_tool() {
  local name="$1" bin="$llamacpp_build/bin/$1"
  if [ ! -x "$bin" ] || [ "bench/$name.cc" -nt "$bin" ] || [ bench/llamacpp_util.h -nt "$bin" ]; then
    g++ -std=c++17 -O2 -o "$bin" "bench/$name.cc" -I"$llamacpp_src/include" \
      -I"$llamacpp_src/ggml/include" -L"$llamacpp_build/bin" -lllama -lggml -lggml-base \
      -Wl,-rpath,"$llamacpp_build/bin" >&2 || return 1
  fi
  echo "$bin"
}
