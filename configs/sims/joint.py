"""Joint training on CH-SIMS (Chinese sentiment regression in [-1, 1]): text, audio, vision.

Data: the `mmsa` builder, config `sims_unaligned` (MMSA's `SIMS/Processed/unaligned_39.pkl`
in `<data_dir>/downloads/manual/mmsa/`; README, "Data sets"): BERT (`bert-base-chinese`)
token features `[39, 768]`, librosa audio `[400, 33]`, OpenFace vision `[55, 709]`. The
official train / valid / test split (1,368 / 456 / 457): valid selects the model, test is
scored once. The unimodal annotations are stored too (`label_text`, `label_audio`,
`label_vision`), not used here.

The labels are float sentiment scores (`DataSpec.task == "regression"`): L1 loss, and
SIMS's metric bins (`eval.regression_bins=sims`: Acc-2 / Acc-3 / Acc-5, F1, MAE, Corr);
`accuracy` is the sign agreement.

Model: a 1-D convolutional sequence encoder per modality, concat fusion, linear probes.
A starting point, not a paper's recipe (LNLN: `configs/sims/lnln.py`).

  mmbal train --config configs/sims/joint.py --workdir runs/sims_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="mmsa", builder_config="sims_unaligned",
                modalities=("text", "audio", "vision"), in_memory=True),
      model=dict(feature_dim=128, hidden_dim=128, fusion="concat", unimodal="probe"),
      method=dict(name="joint"),
      optimizer=dict(name="adamw", learning_rate=1e-4, weight_decay=1e-4, schedule="cosine"),
      train=dict(batch_size=64, num_epochs=50, regression_loss="l1"),
      eval=dict(regression_bins="sims"),
  )
