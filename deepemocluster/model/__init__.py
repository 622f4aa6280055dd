"""The network: a front-end (the mel CNN) with an A/V/D regressor and an auxiliary head
(cluster classifier or Siamese projection) on top; ``model.build`` builds it from a config."""

from deepemocluster.model.network import DeepEmoCluster

__all__ = ["DeepEmoCluster"]
