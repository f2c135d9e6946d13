#!/usr/bin/python3
"""Writes the small .npy fixtures of tests/data_cache with numpy (Debian's python3-numpy).

Run from anywhere: /usr/bin/python3 tests/data_cache/gen_npy_fixtures.py
The files are committed, so the tests need no Python. Values follow simple formulas that the
C++ test recomputes: value(i) = 7 * i - 3 (signed), 7 * i + 3 (unsigned), int16: 3 * i - 100.
"""
import os

import numpy

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
os.makedirs(here, exist_ok=True)


def save(name, array):
    numpy.save(os.path.join(here, name), array, allow_pickle=True)


n = 10
save("int32_1d.npy", (7 * numpy.arange(n) - 3).astype(numpy.int32))
save("int64_1d.npy", (7 * numpy.arange(n) - 3).astype(numpy.int64))
save("uint32_1d.npy", (7 * numpy.arange(n) + 3).astype(numpy.uint32))
save("int16_1d.npy", (3 * numpy.arange(n) - 100).astype(numpy.int16))
# A sample index: [N + 1, 2] rows, C order, in both dtypes Megatron uses.
save("int32_2d.npy", (7 * numpy.arange(2 * n) - 3).astype(numpy.int32).reshape(n, 2))
save("int64_2d.npy", (7 * numpy.arange(2 * n) - 3).astype(numpy.int64).reshape(n, 2))
save("int32_empty.npy", numpy.zeros(0, dtype=numpy.int32))
# Refused: big-endian values, Fortran order of a 2-D array, floats.
save("int32_big_endian.npy", (7 * numpy.arange(n) - 3).astype(">i4"))
save("int32_fortran.npy", numpy.asfortranarray((7 * numpy.arange(2 * n) - 3).astype(numpy.int32).reshape(n, 2)))
save("float64_1d.npy", numpy.arange(n, dtype=numpy.float64))
