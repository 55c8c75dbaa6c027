"""LNLN (Zhang, Wang, Yu, NeurIPS 2024) on CMU-MOSI: robust sentiment regression with
missing data.

The paper's settings (Table 1; `../shared` reference §6.3): T = 8 tokens of width d = 128,
8 heads, loss weights alpha (completeness) 0.9, beta (adversarial) 0.8, gamma
(reconstruction) 0.1, MSE task loss; AdamW lr 1e-4, weight decay 1e-4, a 10 % linear
warm-up then cosine decay, 200 epochs. Training uses the random-missing protocol; the
checkpoint is selected on validation and the test split is scored at missing rates
0.0 ... 0.9 (3 seeds), averaged (`results.json`: `lnln_missing`). The paper reports on MOSI
(average over rates) Acc-7 34.26, Acc-5 38.27, Acc-2 72.55 / 70.94, F1 72.73 / 71.25,
MAE 1.046, Corr 0.527 (see the README); the language features are the pickles' frozen BERT
features here, where the official code fine-tunes BERT.

  mmbal train --config configs/mosi/lnln.py --workdir runs/mosi_lnln data.data_dir=...
"""
BASE = "joint.py"


def get_config():
  return dict(
      method=dict(name="lnln", lnln=dict(dim=128, num_tokens=8, heads=8, fusion_depth=2,
                                         official_code=False, cc=0.9, adv=0.8, rec=0.1)),
      optimizer=dict(name="adamw", learning_rate=1e-4, weight_decay=1e-4, schedule="cosine",
                     warmup_steps=400),   # 10 % of 200 epochs x 20 steps (1284 / 64)
      train=dict(batch_size=64, num_epochs=200),
  )
