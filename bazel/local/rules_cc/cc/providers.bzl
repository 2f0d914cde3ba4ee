"""Re-exports Bazel's built-in C++ providers under names a .bzl can load."""

BuiltinCcInfo = CcInfo
builtin_cc_common = cc_common
