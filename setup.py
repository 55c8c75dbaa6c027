import re

from setuptools import find_packages, setup

# The version lives in mmbal/__init__.py only; read it as text (importing mmbal needs jax).
VERSION = re.search(r'^__version__ = "([^"]+)"', open("mmbal/__init__.py").read(), re.M).group(1)

setup(
    name="mmbal",
    version=VERSION,
    description="Balanced multimodal learning in JAX: gradient modulation, projection, "
                "sharpness and loss-side methods as composable optax transforms.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    url="https://github.com/mmbal/mmbal",
    project_urls={"Documentation": "https://mmbal.github.io/mmbal",
                  "Changelog": "https://github.com/mmbal/mmbal/blob/main/CHANGELOG.md"},
    license="Apache-2.0",
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    python_requires=">=3.11",
    packages=find_packages(include=["mmbal", "mmbal.*"]),
    package_data={"mmbal.data": ["resources/*/*"]},
    install_requires=open("requirements.txt").read().split(),
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.2", "tensorboardX>=2.6",
                             "easy-vqa==1.0", "nbclient>=0.10", "nbformat>=5.10",
                             "ipykernel>=6.29", "equinox>=0.11"],
                    "tensorboard": ["tensorboardX>=2.6"],
                    "vqa": ["easy-vqa==1.0"],
                    "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"]},
    entry_points={"console_scripts": ["mmbal=mmbal.train.cli:console"]},
)
