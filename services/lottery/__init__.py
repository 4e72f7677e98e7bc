"""The lottery service: daily commit-reveal draws anyone can verify."""
