"""The data layer: the raw data contract, the validated book, and the synthetic world."""
