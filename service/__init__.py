"""Vigie's service layer: Flask API and dashboard, scheduled jobs, command line."""
