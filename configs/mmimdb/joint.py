"""Joint training on MM-IMDb (multi-label, 23 genres) from precomputed poster and plot embeddings.

Data: the `mmimdb` builder, config `json`: `mmimdb/split.json`, `mmimdb/dataset/{id}.json`
and your embeddings (any frozen encoder: `embeddings/ids.txt` + `image.npy` + `text.npy`,
ids = IMDb ids) in `<data_dir>/downloads/manual/mmimdb/` (README, "Data sets"); or
`data.builder_config=hdf5` for the authors' `multimodal_imdb.hdf5` features (VGG-16 4096-d,
word2vec 300-d; needs h5py). split.json's dev selects the model, test is scored once.

The labels are multi-hot (`DataSpec.task == "multilabel"`); the trainer picks the
multi-label loss and metrics from the data, nothing here sets them.

Model: an MLP encoder per embedding (vector modalities), concat fusion, linear probes.
A starting point, not a paper's recipe.

  mmbal train --config configs/mmimdb/joint.py --workdir runs/mmimdb_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="mmimdb", builder_config="", modalities=("image", "text"), in_memory=True),
      model=dict(feature_dim=256, hidden_dim=512, fusion="concat", unimodal="probe"),
      method=dict(name="joint"),
      optimizer=dict(name="adamw", learning_rate=1e-3, weight_decay=1e-4, schedule="cosine"),
      train=dict(batch_size=128, num_epochs=20),
  )
