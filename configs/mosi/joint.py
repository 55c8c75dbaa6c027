"""Joint training on CMU-MOSI (sentiment regression in [-3, 3]): text, audio and vision sequences.

Data: the `mmsa` builder, config `mosi_unaligned` (MMSA's `MOSI/Processed/unaligned_50.pkl`
in `<data_dir>/downloads/manual/mmsa/`; README, "Data sets"): BERT token features
`[50, 768]`, COVAREP audio `[375, 5]`, FACET vision `[500, 20]`; `data.builder_config=
mosi_aligned` for the word-aligned file (all `[50, D]`). The official train / valid / test
split: valid selects the model, test is scored once.

The labels are float sentiment scores (`DataSpec.task == "regression"`): the trainer picks
the L1 loss (`train.regression_loss=mse` for MSE) and MMSA's metrics (MAE, Corr, Acc-2 in
both variants, F1, Acc-5, Acc-7) from the data; `accuracy` is the sign agreement
(negative / non-negative).

Model: a 1-D convolutional sequence encoder per modality (mmbal's sequence encoders; they
average over all steps, the padding masks are stored for models that use them), concat
fusion, linear probes. A starting point, not a paper's recipe (LNLN: `configs/mosi/lnln.py`).

  mmbal train --config configs/mosi/joint.py --workdir runs/mosi_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="mmsa", builder_config="mosi_unaligned",
                modalities=("text", "audio", "vision"), in_memory=True),
      model=dict(feature_dim=128, hidden_dim=128, fusion="concat", unimodal="probe"),
      method=dict(name="joint"),
      optimizer=dict(name="adamw", learning_rate=1e-4, weight_decay=1e-4, schedule="cosine"),
      train=dict(batch_size=64, num_epochs=50, regression_loss="l1"),
      eval=dict(regression_bins="mosi"),
  )
