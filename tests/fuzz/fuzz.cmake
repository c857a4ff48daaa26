# libFuzzer harnesses (clang only): the library's sources are compiled into
# each fuzzer with coverage instrumentation, ASan and UBSan. Included by the
# top-level CMakeLists (it uses the generated kernel sources). Configure a
# separate build with CC=clang -DCLMOE_FUZZ=ON; tests/fuzz/run.sh runs them.
set(CLMOE_FUZZ_FLAGS -fsanitize=fuzzer-no-link,address,undefined
    -fno-sanitize-recover=all -fno-omit-frame-pointer -g)
add_library(clmoe_fuzzlib STATIC ${CLMOE_C_SOURCES} $<TARGET_OBJECTS:clmoe_kernels>)
target_include_directories(clmoe_fuzzlib
  PUBLIC ${CMAKE_SOURCE_DIR}/include ${CLMOE_GENERATED_INCLUDE} PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_compile_definitions(clmoe_fuzzlib PRIVATE CLMOE_BUILDING)
target_compile_options(clmoe_fuzzlib PRIVATE ${CLMOE_FUZZ_FLAGS})
target_link_libraries(clmoe_fuzzlib PUBLIC OpenCL::OpenCL clblast PkgConfig::JANSSON
  Threads::Threads m)
foreach(h desc tensor route score checkpoint quant_layer)
  add_executable(fuzz_${h} ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_${h}.c)
  target_compile_options(fuzz_${h} PRIVATE ${CLMOE_FUZZ_FLAGS})
  target_link_options(fuzz_${h} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_${h} PRIVATE clmoe_fuzzlib)
endforeach()
