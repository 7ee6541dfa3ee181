"""Studies built from many runs and analyses: calibration, sensitivity, validation, reports."""
