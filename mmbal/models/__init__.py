"""Flax NNX models: encoders, fusion modules and the multimodal classifier."""
from mmbal.models.classifier import (LATE_FUSIONS, MultimodalClassifier, Outputs, UNIMODAL_MODES, labels_for,
                                     split)
from mmbal.models.encoders import CNNEncoder, ConvSequenceEncoder, MLPEncoder, make_encoder
from mmbal.models.fusion import (FUSIONS, AttentionFusion, ConcatFusion, FiLMFusion, GatedFusion,
                                 SumFusion)
