"""grpc_cc_codegen: C++ message and gRPC service code for one .proto file.

Runs Debian's /usr/bin/protoc with /usr/bin/grpc_cpp_plugin (there is no
offline cc_grpc_library for Bazel 4) and declares the four generated files
beside the .proto: NAME.pb.h, NAME.pb.cc, NAME.grpc.pb.h, NAME.grpc.pb.cc.
"""

def grpc_cc_codegen(name, proto):
    base = proto[:-len(".proto")]
    native.genrule(
        name = name,
        srcs = [proto],
        outs = [
            base + ".pb.h",
            base + ".pb.cc",
            base + ".grpc.pb.h",
            base + ".grpc.pb.cc",
        ],
        cmd = " ".join([
            "/usr/bin/protoc",
            "--proto_path=proto",
            "--proto_path=/usr/include",
            "--cpp_out=$(GENDIR)/proto",
            "--grpc_out=$(GENDIR)/proto",
            "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
            "$(location {})".format(proto),
        ]),
    )
