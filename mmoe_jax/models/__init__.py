"""Models: Flax modules built from plain values (specs); mmoe_jax/builder.py makes them
from a config."""

from mmoe_jax.models import registry
from mmoe_jax.models.backbone import MultiTaskModel
from mmoe_jax.models.embedding import Embedding, FeatureSpec
from mmoe_jax.models.layers import DnnSpec
from mmoe_jax.models.mmoe import MMoE, TowerSpec, predictions

__all__ = ['predictions', 'MMoE', 'MultiTaskModel', 'Embedding', 'FeatureSpec', 'DnnSpec',
           'TowerSpec', 'registry']
