"""Packaging: the sdist carries every C source and header, and builds a wheel elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BUILD_SDIST = (
    "from setuptools import build_meta as b; import sys; print(b.build_sdist(sys.argv[1]))"
)
BUILD_WHEEL = (
    "from setuptools import build_meta as b; import sys; print(b.build_wheel(sys.argv[1]))"
)


def run(code: str, out: Path, cwd: Path) -> str:
    # A user's build: none of the project's own build switches (debug information, -Werror).
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEPIT_")}
    result = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    return out / run(BUILD_SDIST, out, ROOT)


def test_sdist_carries_all_c_sources_and_headers(sdist):
    with tarfile.open(sdist) as archive:
        names = {
            Path(name).relative_to(Path(name).parts[0]).as_posix() for name in archive.getnames()
        }
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "src").glob("*.[ch]")}
    assert expected and expected <= names
    assert "snakepit_bridge/_native.pyi" in names and "snakepit_bridge/py.typed" in names
    server = {
        "snakepit_bridge/server/proto/bridge.proto",
        "snakepit_bridge/server/proto/bridge_pb2.py",
        "snakepit_bridge/server/proto/bridge_pb2.pyi",
        "snakepit_bridge/server/proto/bridge_grpc.py",
        "snakepit_bridge/server/runtime.py",
        "snakepit_bridge_launcher.py",
        "scripts/gen_proto.py",
    }
    assert server <= names, server - names


@pytest.fixture(scope="module")
def wheel(sdist, tmp_path_factory) -> Path:
    """A wheel built from the sdist, as pip builds one for a user."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    with tarfile.open(sdist) as archive:
        if sys.version_info >= (3, 12):
            archive.extractall(tmp_path, filter="data")
        else:
            archive.extractall(tmp_path)
    source = next(p for p in tmp_path.iterdir() if p.is_dir())
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    return wheels / run(BUILD_WHEEL, wheels, source)


def test_sdist_ships_no_build_leftovers(sdist):
    with tarfile.open(sdist) as archive:
        names = [Path(name) for name in archive.getnames()]
    top = {name.parts[0] for name in names}
    assert len(top) == 1
    inside = [name.relative_to(name.parts[0]) for name in names if len(name.parts) > 1]
    assert Path("PKG-INFO") in inside
    leftovers = [
        str(name)
        for name in inside
        if name.parts[0].endswith(".egg-info")
        or name.suffix in (".so", ".o", ".pyc")
        or "__pycache__" in name.parts
        or name.parts[0] in ("build", "dist")
        or name.parts[0].startswith(".venv")
    ]
    assert leftovers == []


def _extension_of(wheel_path: Path, into: Path) -> Path:
    with zipfile.ZipFile(wheel_path) as archive:
        archive.extractall(into)
    return next(into.glob("snakepit_bridge/_native*.so"))


def test_a_users_wheel_carries_no_debug_information(wheel, tmp_path):
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("no readelf (binutils) to list the sections")
    sections = subprocess.run(
        [readelf, "-S", "-W", str(_extension_of(wheel, tmp_path))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ".text" in sections
    assert ".debug_" not in sections


def test_a_users_wheel_repairs_to_a_manylinux_tag(wheel, tmp_path):
    """auditwheel (the ``release`` extra, GIL venv) finds nothing to graft: the extension
    needs only the C library, so the wheel takes a manylinux tag."""
    # Any interpreter's wheel: auditwheel only reads the ELF file.
    bins = os.pathsep.join([os.path.dirname(sys.executable), str(ROOT / ".venv-gil" / "bin")])
    auditwheel = shutil.which("auditwheel", path=bins)
    if auditwheel is None:
        pytest.skip("auditwheel is installed in the GIL venv (the release extra)")
    env = dict(os.environ, PATH=os.path.dirname(auditwheel) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(
        [auditwheel, "repair", "--wheel-dir", str(tmp_path), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    repaired = [p.name for p in tmp_path.glob("*.whl")]
    assert len(repaired) == 1 and "manylinux" in repaired[0], (repaired, proc.stderr)
    shown = subprocess.run(
        [auditwheel, "show", str(tmp_path / repaired[0])], capture_output=True, text=True, env=env
    )
    assert "manylinux" in shown.stdout and "external shared libraries" not in shown.stdout.lower()


def test_wheel_built_from_the_sdist_imports(wheel, tmp_path):
    abi = (
        "cp313t"
        if sysconfig.get_config_var("Py_GIL_DISABLED")
        else f"cp{sys.version_info[0]}{sys.version_info[1]}"
    )
    assert f"-{abi}-" in wheel.name, wheel.name
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
        names = set(archive.namelist())
    assert {
        "snakepit_bridge_launcher.py",
        "snakepit_bridge/server/proto/bridge.proto",
        "snakepit_bridge/server/proto/bridge_pb2.pyi",
        "snakepit_bridge/context.py",
    } <= names
    # Every module of the package, subpackages included (a subpackage left out of
    # pyproject.toml's package list would be missing here).
    modules = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "snakepit_bridge").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert modules <= names, sorted(modules - names)
    probe = (
        "import sys, snakepit_bridge._native as n; "
        "a = n.ThreadSafeAdapter(); a.set_thread_local('k', 1); "
        "assert a.get_thread_local('k') == 1; print(n.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path / "site",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "site") in result.stdout


def test_the_extension_exports_only_its_init_function():
    """Built with -fvisibility=hidden: internal functions are not part of the .so's dynamic
    symbol table, where they could clash with another library's."""
    import shutil

    from snakepit_bridge import _native

    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm (binutils) to read the symbol table")
    out = subprocess.run(
        [nm, "-D", "--defined-only", _native.__file__], capture_output=True, text=True, check=True
    ).stdout
    exported = sorted(line.split()[-1] for line in out.splitlines() if line.strip())
    assert exported == ["PyInit__native"]
