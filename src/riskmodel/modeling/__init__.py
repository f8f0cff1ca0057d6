"""The model: training, calibration, master scale, the model object and its validation."""
