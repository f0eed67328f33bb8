"""Triton kernels for unlearning's hot paths, installed as ``unlearn.kernels``."""
