"""Sensor data: readers, the dataset index, group-aware splits, windowing, augmentation and
serial capture. See the module docs of each for formats and rules."""
