"""Diagnostics of how much a multimodal model uses each modality.

Pure functions of ``apply(params, inputs) -> logits`` and data (see
`mmbal.diagnostics.usage`), and linear probes on frozen encoder features.
Decoder (VLM) models, ``apply(params, image, tokens) -> logits``: `mmbal.diagnostics.decoder`;
any framework's multimodal LLM from arrays of answer logits: `diagnose_from_logits`.
"""
from mmbal.diagnostics.decoder import (BLINDS, AttentionShare, DecoderDiagnosis, ImageStatistics,
                                      answer_logits, answer_sums, attention_share,
                                      diagnose_decoder, diagnose_from_logits, gradient_norm_shares, image_statistics, swap_donors)
from mmbal.diagnostics.probe import fit_linear_probes, probe_accuracy
from mmbal.diagnostics.usage import (dependence, diagnose, dominance, permutation_shapley,
                                     random_orderings, shapley, shapley_from_values,
                                     shapley_monte_carlo, subset_variants, utilisation)
from mmbal.diagnostics.variants import (FILL, FILLS, KEEP, SHUFFLE, VariantStats,
                                        evaluate_variants, mean_inputs, shuffle_permutation)
from mmbal.diagnostics import robustness
