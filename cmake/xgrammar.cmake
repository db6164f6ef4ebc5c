# xgrammar's C++ core (the grammar engine of vLLM, SGLang and TensorRT-LLM) as a static library,
# built from its PyPI source distribution, which scripts/fetch-xgrammar.sh (run by
# scripts/install-deps.sh) unpacks into third_party/. Its cpp/ without the Python/TVM bindings
# (cpp/tvm_ffi), its include/, and the headers it vendors (a patched picojson, dlpack).
# Sets DSV2_HAVE_XGRAMMAR; where the sources were not fetched (e.g. a GPU machine that got only
# the tree), what needs xgrammar is left out of the build, saying so.
set(DSV2_XGRAMMAR_DIR "${PROJECT_SOURCE_DIR}/third_party/xgrammar-0.2.9")
if(EXISTS "${DSV2_XGRAMMAR_DIR}/.complete")
  file(GLOB_RECURSE DSV2_XGRAMMAR_SOURCES CONFIGURE_DEPENDS "${DSV2_XGRAMMAR_DIR}/cpp/*.cc")
  list(FILTER DSV2_XGRAMMAR_SOURCES EXCLUDE REGEX "/cpp/tvm_ffi/")
  # Built only where something links it.
  add_library(xgrammar_core STATIC EXCLUDE_FROM_ALL ${DSV2_XGRAMMAR_SOURCES})
  set_target_properties(xgrammar_core PROPERTIES CXX_STANDARD 17 POSITION_INDEPENDENT_CODE ON)
  target_include_directories(xgrammar_core PUBLIC "${DSV2_XGRAMMAR_DIR}/include")
  target_include_directories(xgrammar_core SYSTEM PUBLIC "${DSV2_XGRAMMAR_DIR}/3rdparty/picojson"
                             "${DSV2_XGRAMMAR_DIR}/3rdparty/dlpack/include")
  target_compile_definitions(xgrammar_core PUBLIC XGRAMMAR_ENABLE_CPPTRACE=0)
  target_compile_options(xgrammar_core PRIVATE -w)  # not our code: its warnings are not ours
  target_link_libraries(xgrammar_core PUBLIC Threads::Threads)
  set(DSV2_HAVE_XGRAMMAR ON)
  message(STATUS "dsv2: xgrammar from ${DSV2_XGRAMMAR_DIR}")
else()
  set(DSV2_HAVE_XGRAMMAR OFF)
  message(STATUS "dsv2: xgrammar not fetched (scripts/install-deps.sh fetches it): structured "
                 "outputs are left out")
endif()
