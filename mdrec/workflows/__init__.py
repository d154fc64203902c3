"""Run workflows: the only code that reads and writes run folders (train, evaluate, compare,
pretrain, transfer, lifelong, index, ab, compare-branches). They sit above the library packages
(data, layers, models, training, evaluation, export, pretraining, transfer, lifelong) and below
the command line and the demo."""
