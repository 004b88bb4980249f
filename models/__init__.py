"""Forecasting: features, estimators, online calibration and model artifacts.

This package never imports :mod:`daemon`, so models can be trained and inspected offline.
"""
