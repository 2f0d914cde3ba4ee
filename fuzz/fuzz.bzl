"""fuzz_test: a libFuzzer harness, and the test that runs it.

The harness (a cc_binary named `name`) defines LLVMFuzzerTestOneInput. With
--config=fuzz it links libFuzzer, and `name`_test fuzzes for `seconds`
from the seed corpus corpus/`name`/ (the CI smoke run); otherwise it links
replay_main, and `name`_test runs every seed once (a regression test).
"""

def fuzz_test(name, srcs, deps, seconds = 10):
    native.cc_binary(
        name = name,
        testonly = True,
        srcs = srcs,
        deps = deps + select({
            "//fuzz:libfuzzer": [],
            "//conditions:default": ["//fuzz:replay_main"],
        }),
    )
    native.sh_test(
        name = name + "_test",
        size = "small" if seconds <= 30 else "large",
        srcs = ["run_fuzzer.sh"],
        data = [":" + name] + native.glob(["corpus/%s/**" % name]),
        args = select({
            "//fuzz:libfuzzer": ["fuzz"],
            "//conditions:default": ["replay"],
        }) + ["$(location :%s)" % name, "fuzz/corpus/" + name, str(seconds)],
    )
