# Sourced by bench/compare_llamacpp.sh and tools/make_llamacpp_fixtures.sh: fetches llama.cpp as
# the llama-cpp-python source distribution on PyPI vendors it, builds it (CPU only, GGML_NATIVE;
# llama-server without its web UI, whose assets would be downloaded),
# and compiles our small programs against its C API (they are not part of our CMake build).
#   llamacpp_setup CACHE_DIR   needs $venv_python (tools/pinned_venv.sh); sets $llamacpp_src,
#                              $llamacpp_build (binaries and libraries in its bin/) and
#                              $ggml_version
#   llamacpp_bf16_pair LAYERS CACHE_DIR
#                              writes (once) a random V2-Lite-shaped checkpoint of LAYERS
#                              decoder layers with the DeepSeek-V3 tokenizer (bench/out/
#                              v2lite-<LAYERS>l-v3vocab) and converts it with llama.cpp's
#                              convert_hf_to_gguf.py to a bf16 GGUF in CACHE_DIR; sets $pair_ckpt
#                              and $pair_gguf (needs llamacpp_setup first, run from the repo root)
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
    [ ! -x "$llamacpp_build/bin/llama-quantize" ] || [ ! -x "$llamacpp_build/bin/llama-server" ]; then
    echo "llama.cpp: building (CPU, GGML_NATIVE) in $llamacpp_build" >&2
    cmake -S "$llamacpp_src" -B "$llamacpp_build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
      -DGGML_CUDA=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
      -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
      >"$cache/cmake.log" 2>&1 || { tail -20 "$cache/cmake.log" >&2; return 1; }
    cmake --build "$llamacpp_build" -j "$(nproc)" \
      --target llama-bench llama-batched-bench llama-quantize llama-server \
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

llamacpp_bf16_pair() {
  local layers="$1" cache="$2" vocab=129280  # DeepSeek-V3's tokenizer
  local v3_tokenizer="../shared/tokenizers/deepseek-v3"
  pair_ckpt="$PWD/bench/out/v2lite-${layers}l-v3vocab"
  pair_gguf="$cache/v2lite-${layers}l-v3vocab-bf16.gguf"
  if [ ! -f "$pair_ckpt/.complete" ]; then
    echo "writing the checkpoint $pair_ckpt ($layers layers, vocab $vocab)" >&2
    rm -rf "$pair_ckpt"
    build/bin/dsv2-make-checkpoint --out "$pair_ckpt" --preset v2-lite --layers "$layers" \
      --vocab-size "$vocab" || return 1
    cp "$v3_tokenizer/tokenizer.json" "$v3_tokenizer/tokenizer_config.json" "$pair_ckpt/"
    touch "$pair_ckpt/.complete"
    rm -f "$pair_gguf"
  fi
  if [ ! -f "$pair_gguf" ]; then
    echo "converting to bf16 GGUF with llama.cpp's convert_hf_to_gguf.py" >&2
    local view="$cache/hf-view" f  # the checkpoint as the converter must see it: q_lora_rank 0
    rm -rf "$view" && mkdir -p "$view"
    for f in "$pair_ckpt"/*; do ln -s "$f" "$view/"; done
    rm "$view/config.json"
    "$venv_python" -c 'import json,sys; c=json.load(open(sys.argv[1])); c["q_lora_rank"]=0; json.dump(c,open(sys.argv[2],"w"),indent=2)' \
      "$pair_ckpt/config.json" "$view/config.json"
    "$venv_python" "$llamacpp_src/convert_hf_to_gguf.py" "$view" --outtype bf16 \
      --outfile "$pair_gguf.part" >"$cache/convert.log" 2>&1 ||
      { tail -20 "$cache/convert.log" >&2; return 1; }
    mv "$pair_gguf.part" "$pair_gguf"
  fi
}
