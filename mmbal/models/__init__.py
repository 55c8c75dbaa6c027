"""Flax NNX models: encoders, fusion modules, the multimodal classifier and a tiny VLM."""
from mmbal.models.classifier import (LATE_FUSIONS, MultimodalClassifier, Outputs, UNIMODAL_MODES, labels_for,
                                     split)
from mmbal.models.encoders import CNNEncoder, ConvSequenceEncoder, MLPEncoder, make_encoder
from mmbal.models.fusion import (FUSIONS, AttentionFusion, ConcatFusion, FiLMFusion, GatedFusion,
                                 SumFusion)
from mmbal.models.vlm import (TinyVLM, lm_only_logits, load_pretrained, make_vlm_apply, vlm_groups,
                              vlm_modality_labels)
