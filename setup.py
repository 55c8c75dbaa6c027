from setuptools import find_packages, setup

setup(
    name="mmbal",
    version="0.1.0",
    description="Balanced multimodal learning in JAX: gradient modulation, projection, "
                "sharpness and loss-side methods as composable optax transforms.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["mmbal", "mmbal.*"]),
    package_data={"mmbal.data": ["resources/*/*"]},
    install_requires=open("requirements.txt").read().split(),
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3", "tensorboardX>=2.6"],
                    "tensorboard": ["tensorboardX>=2.6"]},
    entry_points={"console_scripts": ["mmbal=mmbal.train.cli:main"]},
)
