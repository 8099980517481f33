"""Plain C kernels compiled on first use with the machine's C compiler and cached.

The compiler is ``$CC``, else ``cc`` / ``gcc`` / ``clang``; libraries are built for the machine's
own instruction set and cached under ``$VIDEOTL_CACHE_DIR/kernels`` (default
``~/.cache/videotl/kernels``), keyed by the source, the flags, the compiler and the CPU, and
written atomically (concurrent builders, e.g. DDP ranks or DataLoader workers, each rename a
whole file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

__all__ = ["NATIVE_FLAG_SETS", "build_library", "cache_dir", "find_compiler", "load_native"]

T = TypeVar("T")

# Tried in order: the machine's full vector width first, then portable builds.
NATIVE_FLAG_SETS: Tuple[Tuple[str, ...], ...] = (
    ("-march=native", "-mprefer-vector-width=512"),
    ("-march=native",),
    ("-mcpu=native",),
    (),
)


def cache_dir() -> Path:
    root = os.environ.get("VIDEOTL_CACHE_DIR") or Path.home() / ".cache" / "videotl"
    return Path(root) / "kernels"


def find_compiler() -> Optional[str]:
    candidates = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    return None


def _cpu_identity() -> str:
    """What ``-march=native`` depends on, so a cache shared between machines never mixes builds."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _compiler_version(compiler: str) -> str:
    result = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    return result.stdout


def build_library(
    source: Path,
    compiler: str,
    *,
    base_flags: Sequence[str],
    flag_sets: Sequence[Tuple[str, ...]] = NATIVE_FLAG_SETS,
    what: str,
) -> Path:
    """Compile ``source`` into the cache (atomically) and return the library's path.

    ``flag_sets`` are tried in order after ``base_flags``. Raises ``RuntimeError`` naming
    ``what`` with the compiler's messages if none compiles.
    """
    code = Path(source).read_bytes()
    flags = repr((tuple(base_flags), tuple(flag_sets))).encode()
    identity = [code, flags, compiler.encode(), _compiler_version(compiler).encode(), _cpu_identity().encode()]
    key = hashlib.sha256(b"\0".join(identity)).hexdigest()[:16]
    target = cache_dir() / f"{Path(source).stem}_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    errors: List[str] = []
    for extra in flag_sets:
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so.tmp", delete=False) as handle:
            scratch = Path(handle.name)
        command = [compiler, *base_flags, *extra, "-o", str(scratch), str(source), "-lm"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            os.replace(scratch, target)
            return target
        scratch.unlink(missing_ok=True)
        errors.append(f"{' '.join(command)}:\n{result.stderr.strip()}")
    raise RuntimeError(f"could not compile {what}:\n" + "\n".join(errors))


def load_native(
    source: Path,
    open_library: Callable[[Path], T],
    *,
    base_flags: Sequence[str],
    what: str,
    fallback: str,
    logger: logging.Logger,
    missing_compiler_level: int = logging.WARNING,
) -> Optional[T]:
    """``open_library`` of the library built from ``source`` (:func:`build_library`), or None when
    it cannot be had: ``VIDEOTL_CPU_KERNELS=0``, no compiler (logged at ``missing_compiler_level``)
    or a failed build or load (a warning with the compiler's messages). ``fallback`` says, in a
    sentence starting in lower case, what runs instead."""
    if os.environ.get("VIDEOTL_CPU_KERNELS", "1") == "0":
        return None
    compiler = find_compiler()
    if compiler is None:
        logger.log(missing_compiler_level, "No C compiler found (set CC): %s", fallback)
        return None
    try:
        return open_library(build_library(source, compiler, base_flags=base_flags, what=what))
    except (RuntimeError, OSError) as err:
        logger.warning("%s\n%s", err, fallback[:1].upper() + fallback[1:])
        return None
