"""Global Self-Attention (GSA): the module, its reference math and its backends."""

from gsa_space.attention.module import GlobalSelfAttention, content_attention, relative_attention_1d

__all__ = ["GlobalSelfAttention", "content_attention", "relative_attention_1d"]
