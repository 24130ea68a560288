"""Token classification: span <-> tag conversion, datamodule, LightningModule, inference, stage."""
