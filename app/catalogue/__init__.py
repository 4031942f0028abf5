"""The catalogue of allowed destinations (destinations.json) and their business hours."""
