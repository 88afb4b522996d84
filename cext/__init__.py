"""Cython kernels, each with a pure-Python twin (the test oracle and the fallback).

The compiled module is used unless ``LALIN_NO_EXTENSIONS=1``; if it is missing without that
flag, importing the kernel's module raises (no silent fallback). ``KERNELS`` reports which
implementation each kernel loaded.
"""
