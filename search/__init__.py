"""Studies, data, training, the Ray Tune + Optuna wiring and the `gsa-nas` CLI.

`study/` reads a YAML study into frozen objects (the owner of the study's dotted keys);
`data`, `cifar` load data sets; `train_loop` trains one trial (`worker` sets a training
process up); `tune/` is the only package that imports Ray (searcher, scheduler, trainable,
session); `results` writes the run directory through `reports.run_dir`; `runner` and `cli`
tie it together. Imports point one way: search -> reports -> gsa_space.
"""
