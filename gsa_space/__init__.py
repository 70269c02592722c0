"""The GSA model family and its design space: pure PyTorch (+ fvcore), no Ray, no Optuna.

`attention/` is the GSA module (spec, module, backends; docs/gsa.md); `config` the frozen network
configs and the owner of the network keys (`gsa.X`, `stages.N.X`, `width_mult`, ...); `networks`
and `variants` build GSA-ResNets and their conv twins; `space` the design space as data;
`complexity` params, MACs and activation memory; `describe` the tables `gsa-nas` prints.
"""

from gsa_space.attention import GlobalSelfAttention, attention_backend, content_attention, relative_attention_1d
from gsa_space.complexity import Complexity, complexity
from gsa_space.config import NetConfig, StageConfig, apply_overrides
from gsa_space.networks import build_net, create_net
from gsa_space.space import DESIGN_SPACE, Choice, Dimension, FloatRange, IntRange, sample, validate
from gsa_space.variants import build_config, conv_counterpart, list_variants

__all__ = [
    "DESIGN_SPACE", "Choice", "Complexity", "Dimension", "FloatRange", "GlobalSelfAttention", "IntRange", "NetConfig",
    "StageConfig", "apply_overrides", "attention_backend", "build_config", "build_net", "complexity", "conv_counterpart",
    "content_attention", "create_net", "list_variants", "relative_attention_1d", "sample", "validate",
]
