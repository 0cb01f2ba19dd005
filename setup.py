"""tfrewind: pruning with fine-tuning, weight rewinding and LR rewinding on tf_keras."""

from setuptools import find_packages, setup

setup(
    name="tfrewind",
    version="0.1.0",
    description="Prune tf_keras networks; retrain by fine-tuning, weight or learning-rate rewinding",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfrewind", "tfrewind.*"]),
    package_data={"tfrewind": ["reference/*.csv", "reference/*.md"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "tensorflow-model-optimization>=0.8,<0.9",
        "tensorflow-datasets>=4.9,<5",
        "importlib_resources",  # tfds needs it to download, but does not declare it
        "absl-py>=1.4",
        "tensorboard>=2.15",  # TF 2.21 no longer pulls it in; we write its HParams records
        "numpy>=1.26",
        "pandas>=2.0",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",  # the offline `digits` dataset of the quickstart
    ],
    extras_require={
        "test": ["pytest>=7.4", "pytest-xdist>=3.5"],
        # GPU machines without a system CUDA: TensorFlow's own CUDA and cuDNN wheels.
        "cuda": ["tensorflow[and-cuda]>=2.21,<2.22"],
    },
    entry_points={"console_scripts": ["tfrewind=tfrewind.cli:run_main"]},
)
