"""GRPO Self-Corrective Preference Aligner (MSPA section 3.2): config beside trainer, as in TRL.

``config`` (the YAML, validated at load), ``dataset`` (U2A -> training prompts), ``policy``
(which model to align), ``trainer`` (TRL ``GRPOTrainer`` + MLflow + checkpoint with a
``model_version``), ``evaluate`` (base vs aligned on held-out users).
"""
