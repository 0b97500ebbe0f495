"""Taichi kernels for Soft Anisotropic Diagrams; nothing but kernels lives here.

Every kernel takes its sizes from its ndarray arguments, so one process compiles each
kernel once (per K and channel count, which are compile-time constants) for any image
size or site count, and Taichi's offline cache serves the next process.
"""
