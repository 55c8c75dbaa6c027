"""Joint training on Hateful Memes from precomputed image and text embeddings.

Data: the `hateful_memes` builder: the jsonl files and your embeddings (any frozen
encoder: `embeddings/ids.txt` + `image.npy` + `text.npy`) in
`<data_dir>/downloads/manual/hateful_memes/` (README, "Data sets"). train.jsonl trains,
dev_seen selects the model, test_seen is scored once at the end.

Model: an MLP encoder per embedding (vector modalities), concat fusion, linear probes.
A starting point, not a paper's recipe; report AUROC as well when comparing with the
literature (the trainer reports accuracy).

  mmbal train --config configs/hateful_memes/joint.py --workdir runs/hm_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="hateful_memes", builder_config="", modalities=("image", "text"),
                in_memory=True),
      model=dict(feature_dim=128, hidden_dim=256, fusion="concat", unimodal="probe"),
      method=dict(name="joint"),
      optimizer=dict(name="adamw", learning_rate=1e-4, weight_decay=1e-2, schedule="cosine"),
      train=dict(batch_size=64, num_epochs=20),
  )
