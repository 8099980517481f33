"""videotl as an installed package: build the wheel, install it into a fresh virtual environment
outside the checkout, and use it there (console scripts, packaged configs, the notebook API)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Tests that use the session fixture tiny_trained run on one xdist worker, which builds it once.
pytestmark = pytest.mark.xdist_group("tiny_trained")

ROOT = Path(__file__).resolve().parents[2]


def _see_running_site_packages(python: Path) -> None:
    """Let the venv of ``python`` import the heavy dependencies (torch, decord, ...) from the
    environment running the tests, which may itself be a virtual environment (where
    ``--system-site-packages`` would reach the base interpreter instead). A ``.pth`` file lists
    those folders as plain paths: they come after the venv's own site-packages, so the wheel's
    videotl is imported first, and the ``.pth`` files inside them (an editable install of the
    checkout among them) are not run."""
    running = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    running = [p for p in running if not Path(p).resolve().is_relative_to(ROOT)]
    venv_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    Path(venv_site, "_running_environment.pth").write_text("".join(f"{p}\n" for p in running))


@pytest.mark.slow
def test_wheel_installs_and_works_outside_the_checkout(tmp_path, tiny_trained):
    _, data, checkpoint = tiny_trained
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("videotl-*.whl")
    venv = tmp_path / "venv"
    # This interpreter's pip installs into the venv (--python), which saves bootstrapping a pip there.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    _see_running_site_packages(python)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        timeout=600,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()

    help_text = subprocess.run(
        [str(bin_dir / "videotl-train"), "--cfg", "charades_12fps.yaml", "--help"],
        cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert help_text.returncode == 0 and "--cfg" in help_text.stdout, help_text.stderr

    script = textwrap.dedent(
        f"""
        import videotl, videotl_tools
        from videotl.config import load_config
        assert videotl.__file__.startswith({str(venv)!r}), videotl.__file__
        assert videotl_tools.__file__.startswith({str(venv)!r}), videotl_tools.__file__
        m = videotl.create_model('x2plus1d_m_tokenlearner_charades')
        names = videotl.list_models()
        assert 'x2plus1d_m_tokenlearner_avid' in names and m.num_classes == 157
        assert load_config('charades_12fps.yaml').RES5.TEMPORAL == 'tokenlearner'
        model = videotl.load_model({str(checkpoint)!r})
        prediction = videotl.predict(model, {str(data / "Charades_v1_480" / "AAA01.mp4")!r}, top_k=2)
        print(len(names), prediction.top)
        """
    )
    used = subprocess.run([str(python), "-c", script], cwd=work, capture_output=True, text=True, timeout=600)
    assert used.returncode == 0, used.stderr[-3000:]
    assert "[(" in used.stdout
