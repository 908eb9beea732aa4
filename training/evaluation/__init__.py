"""Evaluation: re-id (CMC, mAP, mINP, centroids) and attribute metrics; `personid eval`."""
