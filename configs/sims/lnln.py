"""LNLN (Zhang, Wang, Yu, NeurIPS 2024) on CH-SIMS: robust sentiment regression with
missing data.

The paper's settings (Table 1; `../shared` reference §6.3): T = 8 tokens of width d = 128,
8 heads, loss weights alpha (completeness) 0.9, beta (adversarial) 0.6, gamma
(reconstruction) 0.1, MSE task loss; AdamW lr 1e-4, weight decay 1e-4, a 10 % linear
warm-up then cosine decay, 200 epochs. Training uses the random-missing protocol; the
checkpoint is selected on validation and the test split is scored at missing rates
0.0 ... 0.9 (3 seeds), averaged (`results.json`: `lnln_missing`). The paper reports on SIMS
(average over rates) Acc-5 34.64, Acc-3 57.14, Acc-2 72.73, F1 79.43 (over-estimated: the
authors' corrigendum; a reproduction gives 69.18), MAE 0.514, Corr 0.397 (see the README); the language features are the pickles' frozen BERT
features here, where the official code fine-tunes BERT.

  mmbal train --config configs/sims/lnln.py --workdir runs/sims_lnln data.data_dir=...
"""
BASE = "joint.py"


def get_config():
  return dict(
      method=dict(name="lnln", lnln=dict(dim=128, num_tokens=8, heads=8, fusion_depth=4,
                                         official_code=False, cc=0.9, adv=0.6, rec=0.1)),
      optimizer=dict(name="adamw", learning_rate=1e-4, weight_decay=1e-4, schedule="cosine",
                     warmup_steps=420),   # 10 % of 200 epochs x 21 steps (1368 / 64)
      train=dict(batch_size=64, num_epochs=200),
  )
