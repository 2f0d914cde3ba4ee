"""Wraps a library installed by Debian as a cc_library, using pkg-config.

`system_library(name = "x", pkg_config = [...])` creates the repository `@x`
whose only target `@x//:x` (spelled `@x`) carries the linker flags and
defines that pkg-config reports. Headers stay in /usr/include, which the
compiler already searches: include them by their path under it (for example
<postgresql/libpq-fe.h>), since include directories that pkg-config adds are
not passed on to dependent targets. Nothing is downloaded: pkg-config runs
locally when the repository is set up.
"""

def _run_pkg_config(ctx, flag):
    result = ctx.execute(["pkg-config", flag] + ctx.attr.pkg_config)
    if result.return_code != 0:
        fail(("pkg-config {} {} failed (is the -dev package installed? " +
              "run tools/install_deps.sh): {}").format(
                 flag,
                 " ".join(ctx.attr.pkg_config),
                 result.stderr,
             ))
    return [f for f in result.stdout.replace("\n", " ").split(" ") if f]

def _system_library_impl(ctx):
    linkopts = _run_pkg_config(ctx, "--libs") + ctx.attr.extra_linkopts
    cflags = _run_pkg_config(ctx, "--cflags")
    defines = [f[2:] for f in cflags if f.startswith("-D")]

    ctx.file("WORKSPACE", "workspace(name = \"{}\")\n".format(ctx.name))
    ctx.file("BUILD.bazel", """\
cc_library(
    name = "{name}",
    linkopts = {linkopts},
    defines = {defines},
    visibility = ["//visibility:public"],
)
""".format(
        name = ctx.name,
        linkopts = repr(linkopts),
        defines = repr(defines),
    ))

system_library = repository_rule(
    implementation = _system_library_impl,
    attrs = {
        "pkg_config": attr.string_list(mandatory = True),
        "extra_linkopts": attr.string_list(),
    },
    local = True,
)
