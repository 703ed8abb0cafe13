"""Training side of CainGAN: data cache, dataset, loop, evaluation (may import caingan, never app)."""
