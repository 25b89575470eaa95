"""Vigie's data layer: sources → validated tidy frames → versioned territorial cube."""
