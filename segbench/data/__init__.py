"""Datasets: the VOC reader, the embedded generator and the VOC/SBD download."""
