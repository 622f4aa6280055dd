"""The network: a CNN encoder with an A/V/D regressor and an auxiliary head (cluster classifier
or Siamese projection) on top."""

from deepemocluster.model.network import DeepEmoCluster, build_model

__all__ = ["DeepEmoCluster", "build_model"]
