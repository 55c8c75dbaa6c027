"""Diagnostics of how much a multimodal model uses each modality."""
from mmbal.diagnostics.probe import fit_linear_probes, probe_accuracy
