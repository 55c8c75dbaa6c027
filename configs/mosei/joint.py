"""Joint training on CMU-MOSEI (sentiment regression in [-3, 3]): text, audio and vision sequences.

Data: the `mmsa` builder, config `mosei_unaligned` (MMSA's
`MOSEI/Processed/unaligned_50.pkl` in `<data_dir>/downloads/manual/mmsa/`; README, "Data
sets"): BERT token features `[50, 768]`, COVAREP audio `[500, 74]`, FACET vision
`[500, 35]`; `data.builder_config=mosei_aligned` for the word-aligned file. The official
train / valid / test split (16,326 / 1,871 / 4,659): valid selects the model, test is
scored once. The split is read from the array_record files, not held in memory (text
features alone are 2.5 GB for train).

The labels are float sentiment scores (`DataSpec.task == "regression"`): L1 loss and
MMSA's MOSI/MOSEI metrics from the data; `accuracy` is the sign agreement.

Model: a 1-D convolutional sequence encoder per modality, concat fusion, linear probes.
A starting point, not a paper's recipe (LNLN: `configs/mosei/lnln.py`).

  mmbal train --config configs/mosei/joint.py --workdir runs/mosei_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="mmsa", builder_config="mosei_unaligned",
                modalities=("text", "audio", "vision"), in_memory=False),
      model=dict(feature_dim=128, hidden_dim=128, fusion="concat", unimodal="probe"),
      method=dict(name="joint"),
      optimizer=dict(name="adamw", learning_rate=1e-4, weight_decay=1e-4, schedule="cosine"),
      train=dict(batch_size=64, num_epochs=20, regression_loss="l1"),
      eval=dict(regression_bins="mosi"),
  )
