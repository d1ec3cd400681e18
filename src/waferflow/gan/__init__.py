"""GAN augmentation: a class-conditional WGAN-GP for rare classes, with a quality gate."""
