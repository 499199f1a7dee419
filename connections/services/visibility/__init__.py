"""What people and monitors see: /metrics, alerts, the admin's figures and overview, tallies."""
