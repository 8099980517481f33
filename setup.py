from setuptools import find_packages, setup

setup(
    name="videotl",
    version="0.1.0",
    description="TokenLearner video recognition: X(2+1)D Bottleneck Transformer and ViViT, on real video files",
    python_requires=">=3.9",
    packages=find_packages(include=["videotl", "videotl.*"]),
    # The Vector Transformer's CPU kernels are compiled from source on first use.
    package_data={"videotl.models": ["csrc/*.c"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        # pytorchvideo's models are used as the X3D reference; its transforms package is not.
        "pytorchvideo==0.1.5",
        # decord2 ships the `decord` module with a current FFmpeg (AV1, truncated files).
        "decord2",
        "av",
        "fvcore",
        "iopath",
        "numpy",
        "scikit-learn",
        "pyyaml",
        "tqdm",
        "tensorboard",
        "matplotlib",
        "pillow",
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout"]},
)
