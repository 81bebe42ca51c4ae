"""Post-training quantization chosen by the project: calibration statistics from the float TFLite, activation ranges
per method (minmax | percentile | mse | kl), tie groups, and the rewrite of the converter's uint8 TFLite."""
