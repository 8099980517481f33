from setuptools import setup

# Console scripts: the tools of tools/, installed as the package videotl_tools.
TOOLS = {
    "videotl-train": "train_net",
    "videotl-test": "test_net",
    "videotl-predict": "predict",
    "videotl-eval-charades": "eval_charades",
    "videotl-check-videos": "check_videos",
    "videotl-visualize-tokens": "visualize_tokens",
    "videotl-plot-training": "plot_training",
    "videotl-model-info": "model_info",
    "videotl-profile-flops": "profile_flops",
    "videotl-benchmark": "benchmark",
    "videotl-check-distributed": "check_distributed",
    "videotl-check-gpu": "check_gpu",
    "videotl-demo": "run_demo",
    "videotl-ablate": "ablate",
    "videotl-probe-tokens": "probe_tokens",
    "videotl-export": "export",
}

setup(
    name="videotl",
    version="0.2.0",
    description="TokenLearner video recognition: X(2+1)D Bottleneck Transformer and ViViT, on real video files",
    python_requires=">=3.9",
    packages=[
        "videotl",
        "videotl.config",
        "videotl.configs",
        "videotl.data",
        "videotl.data.datasets",
        "videotl.data.decoding",
        "videotl.engine",
        "videotl.evaluation",
        "videotl.models",
        "videotl.profiling",
        "videotl.utils",
        "videotl.visualization",
        "videotl_tools",
        "videotl_tools.harness",
    ],
    # The configs live in configs/ at the top of the checkout and ship inside the wheel as
    # videotl.configs (found by name: --cfg charades_12fps.yaml); the tools likewise.
    package_dir={"videotl.configs": "configs", "videotl_tools": "tools"},
    # The C kernels (the Vector Transformer's, the normalise kernel) are compiled from source on first use.
    package_data={
        "videotl.models": ["csrc/*.c"],
        "videotl.data": ["csrc/*.c"],
        "videotl.configs": ["*.yaml", "**/*.yaml"],
    },
    entry_points={"console_scripts": [f"{name} = videotl_tools.{module}:main" for name, module in TOOLS.items()]},
    install_requires=[
        # The oldest releases a test run has passed with (CI's pins, requirements.txt); a test keeps
        # the two in step.
        "torch>=2.14",
        "torchvision>=0.29",
        # pytorchvideo's models are used as the X3D reference; its transforms package is not.
        "pytorchvideo==0.1.5",
        # decord2 ships the `decord` module with a current FFmpeg (AV1, truncated files).
        "decord2",
        "av",
        # The torchcodec backend (and GPU decoding) loads FFmpeg's shared libraries at first use,
        # which pip does not bring: without them only that backend is unavailable (one clear
        # error, see datasets/DATASETS.md); decord and PyAV bundle their own FFmpeg.
        "torchcodec",
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
    # msgpack reads flax checkpoints (videotl.models.convert_flax); nothing else needs it.
    extras_require={
        "export": ["onnx", "onnxscript", "onnxruntime"],
        "flax": ["msgpack"],
        # What the suite was run with (pytest 9.2, pytest-xdist 3.8, pytest-timeout 2.4, ruff 0.17):
        # a new major release of these is taken once the suite passes on it, and ruff's minor
        # releases change its formatting, which the lint step checks.
        "test": [
            "pytest>=9,<10",
            "pytest-timeout>=2.4,<3",
            "pytest-xdist>=3.8,<4",
            "ruff>=0.17,<0.18",
            "wheel",
            "onnx",
            "onnxscript",
            "onnxruntime",
            "msgpack",
            # A static FFmpeg command line: the decoding tests' format corpus and its truth.
            "imageio-ffmpeg",
        ],
    },
)
