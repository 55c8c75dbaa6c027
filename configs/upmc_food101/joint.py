"""Joint training on UPMC Food-101 from precomputed image and title embeddings.

Data: the `upmc_food101` builder: `texts/{train,test}_titles.csv` and your embeddings (any
frozen encoder: `embeddings/ids.txt` + `image.npy` + `text.npy`, ids like
`train/apple_pie_0.jpg`) in `<data_dir>/downloads/manual/upmc_food101/` (README, "Data
sets"). Validation is a fixed stratified carve from the train CSV (5,000 rows, seed 0);
test_titles.csv is scored once at the end.

Model: an MLP encoder per embedding (vector modalities), concat fusion, linear probes.
A starting point, not a paper's recipe.

  mmbal train --config configs/upmc_food101/joint.py --workdir runs/food_joint \\
      data.data_dir=/path/to/tensorflow_datasets
"""


def get_config():
  return dict(
      data=dict(name="upmc_food101", builder_config="", modalities=("image", "text"),
                in_memory=True),
      model=dict(feature_dim=256, hidden_dim=512, fusion="concat", unimodal="probe"),
      method=dict(name="joint"),
      optimizer=dict(name="adamw", learning_rate=1e-3, weight_decay=1e-4, schedule="cosine"),
      train=dict(batch_size=128, num_epochs=20),
  )
