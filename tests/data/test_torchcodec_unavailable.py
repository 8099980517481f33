"""A torchcodec that is installed but cannot load (built for another torch, or for CUDA libraries a
CPU torch lacks) makes its backend unavailable with the reason, instead of failing every import."""

import sys

import pytest

from videotl.data.decoding import torchcodec_backend


@pytest.fixture
def broken_torchcodec(tmp_path, monkeypatch):
    package = tmp_path / "torchcodec"
    package.mkdir()
    (package / "__init__.py").write_text(
        'raise OSError("Could not load this library: /site-packages/torchcodec/libtorchcodec_image.so")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [name for name in sys.modules if name == "torchcodec" or name.startswith("torchcodec.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(torchcodec_backend, "package_version", lambda module: "9.9.0")
    torchcodec_backend.torchcodec_unavailable_reason.cache_clear()
    yield
    torchcodec_backend.torchcodec_unavailable_reason.cache_clear()


def test_a_torchcodec_that_cannot_load_is_unavailable_with_the_reason(broken_torchcodec):
    import torch

    reason = torchcodec_backend.torchcodec_unavailable_reason()
    assert reason == (
        f"torchcodec 9.9.0 cannot load its libraries with torch {torch.__version__} (Could not load this library: "
        "/site-packages/torchcodec/libtorchcodec_image.so): install the torchcodec release made for this torch"
    )
    assert torchcodec_backend.TorchcodecBackend().unavailable_reason() == reason
