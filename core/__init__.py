"""What the collector, the analysis worker and the dashboard share."""
