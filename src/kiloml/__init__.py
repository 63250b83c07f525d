"""kiloml: a local TinyML toolchain from sensor data to bit-exact int8 C for microcontrollers."""

__version__ = "0.1.0"
