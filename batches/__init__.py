"""Batch jobs: many texts, one job, results kept for download (shared/spec/API.md, "Batch jobs")."""
