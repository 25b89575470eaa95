"""The ``/api/v1`` blueprints, one per resource; shared helpers live in :mod:`.common`."""
