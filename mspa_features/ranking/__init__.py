"""Rankers that consume MSPA features, and the AIS/LIS ablations that prove whether they help."""
