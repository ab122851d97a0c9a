"""Build of the C extension ``snakepit_bridge._native``.

Metadata lives in pyproject.toml; this file only describes the extension, because the
compiler flags depend on the interpreter being built for (free-threaded or not).
"""

import os
import sysconfig

from setuptools import Extension, setup
from setuptools.command.sdist import sdist as _sdist

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

SOURCES = [
    "src/module.c",
    "src/adapter.c",
    "src/fork.c",
    "src/lock.c",
    "src/rlock.c",
    "src/guards.c",
    "src/tracker.c",
    "src/request.c",
    "src/tracked.c",
    "src/shards.c",
    "src/method.c",
    "src/watch.c",
]
HEADERS = [
    "src/compat.h",
    "src/state.h",
    "src/adapter.h",
    "src/fork.h",
    "src/list.h",
    "src/release.h",
    "src/lock.h",
    "src/rlock.h",
    "src/guards.h",
    "src/tracker.h",
    "src/request.h",
    "src/tracked.h",
    "src/shards.h",
    "src/method.h",
    "src/clock.h",
    "src/watch.h",
]

# -fvisibility=hidden: the module exports PyInit__native only (PyMODINIT_FUNC marks it).
extra_compile_args = [
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wno-missing-field-initializers",
    "-fvisibility=hidden",
]
if os.environ.get("SNAKEPIT_WERROR"):
    # The project's own test build: every warning is an error.
    extra_compile_args.append("-Werror")
if os.environ.get("SNAKEPIT_DEBUG"):
    # The debug build (`make test-debug`): no optimisation, full debug information, and the
    # invariant assertions live (they compile away under the interpreter's usual -DNDEBUG).
    extra_compile_args += ["-O0", "-g3", "-UNDEBUG"]
extra_link_args = []
if os.environ.get("SNAKEPIT_TSAN"):
    extra_compile_args += ["-fsanitize=thread", "-g", "-O1"]
    extra_link_args.append("-fsanitize=thread")
elif not (os.environ.get("SNAKEPIT_DEBUG") or os.environ.get("SNAKEPIT_DEBUG_INFO")):
    # What users install: no debug information (a third of the file's size, of no use without
    # the sources). The project's own builds keep it (SNAKEPIT_DEBUG_INFO=1 in scripts/setup.sh),
    # so the native stacks of a hung test name our functions and lines.
    extra_compile_args.append("-g0")
    extra_link_args.append("-Wl,--strip-debug")

define_macros = []
if FREE_THREADED:
    # Some toolchains share one pyconfig.h between builds; say it explicitly.
    define_macros.append(("Py_GIL_DISABLED", "1"))


class sdist(_sdist):
    """The sdist, without setuptools' egg-info folder (a build leftover; PKG-INFO at the top of
    the archive is the metadata, and a build from the sdist writes its own)."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        kept = [f for f in files if not f.split(os.sep, 1)[0].endswith(".egg-info")]
        super().make_release_tree(base_dir, kept)


setup(
    cmdclass={"sdist": sdist},
    ext_modules=[
        Extension(
            "snakepit_bridge._native",
            sources=SOURCES,
            depends=HEADERS,
            include_dirs=["src"],
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            # The limited API is not available on free-threaded builds, and the native
            # types use PyMutex and vectorcall, so no py_limited_api anywhere.
        )
    ],
)
