"""Training side of CainGAN: data cache, dataset, training loop, and `train.evaluation`
(may import caingan, never app)."""
