"""The native CPU backend of the GSA module: fused C kernels behind torch.library operators.

Layout: kernels.py builds, loads and calls the C kernels (kernels.c and its headers); fused.py is
the whole module's forward and backward on them; ops.py registers those and the axial step as
gsa_nas:: operators and holds the entry points; memory.py reuses the largest buffers.
"""

from gsa_space.attention.native.memory import retain_freed_memory
from gsa_space.attention.native.ops import axial_step, gsa_forward, kernels_loaded, supports

__all__ = ["axial_step", "gsa_forward", "kernels_loaded", "retain_freed_memory", "supports"]
