"""The native CPU backend of the GSA module: C kernels, their build, and the memory they reuse."""

from gsa_space.attention.native.kernels import retain_freed_memory

__all__ = ["retain_freed_memory"]
