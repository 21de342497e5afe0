"""Decoding: tasks as data, honest evaluation protocols, classical baselines, probes and fine-tuning."""
