"""Training: the LightningDataModule, the LightningModule and the Trainer built from config."""
