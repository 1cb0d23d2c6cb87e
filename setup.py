"""The package's one compiled part: the aggregate KL's CPU kernel (src/wiseale/native), built
at install time with the C++ compiler that `make install` installs. It is optional: without a
compiler the install goes on and wiseale uses its other kernels (wiseale.pairwise)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "wiseale._log_overlap",
    sources=["src/wiseale/native/log_overlap.cpp"],
    depends=["src/wiseale/native/log_overlap_kernels.hpp"],
    language="c++",
    # no contraction into fused multiply-adds: the AVX-512, AVX2 and base builds of the
    # kernels then give the same bits
    extra_compile_args=["-O3", "-std=c++17", "-fopenmp", "-ffp-contract=off", "-Wno-psabi"],
    extra_link_args=["-fopenmp"],
    optional=True,
)])
