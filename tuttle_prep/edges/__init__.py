"""The edges: one module per outside system (S3, the lock, sheets, CloudWatch, SNS). No click, no commands."""
