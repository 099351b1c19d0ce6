// The translation unit that owns the examples' precompiled header (examples/CMakeLists.txt).
