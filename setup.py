"""Build and install lalin; compiles the Cython kernels in cext/ (with -ffp-contract=off)."""

from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

# Fused multiply-add would change the last bits of floating-point results between the
# compiled kernels and their pure-Python twins; replay determinism needs them equal.
COMPILE_ARGS = ["-O2", "-ffp-contract=off", "-fno-fast-math"]

extensions = [
    Extension("cext._flow", ["cext/_flow.pyx"], extra_compile_args=COMPILE_ARGS),
    Extension("cext._timing", ["cext/_timing.pyx"], extra_compile_args=COMPILE_ARGS),
    Extension("cext._corridor", ["cext/_corridor.pyx"], extra_compile_args=COMPILE_ARGS),
]


def read_requirements(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith(("#", "-"))]


setup(
    name="lalin",
    version="0.1.0",
    description="Event-sourced traffic-signal and VMS control for area traffic control centres",
    python_requires=">=3.11",
    packages=find_packages(include=["controllers*", "cext*", "infra*", "streams*", "devices*"]),
    package_data={"infra": ["migrations/*.sql", "catalogue/*.yaml", "catalogue/plans/*.yaml", "catalogue/counts/*.csv"],
                  "devices": ["catalogue/*.yaml", "twin/data/*"], "cext": ["*.pyx"]},
    ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}),
    install_requires=read_requirements("requirements.txt"),
    entry_points={"console_scripts": ["lalin = infra.cli:main"]},
    zip_safe=False,
)
