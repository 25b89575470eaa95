"""The storage foundation, at the bottom of every layer: what Vigie keeps and how it writes it.

* :mod:`features.storage.atomic`: every file or folder Vigie publishes is written beside its final
  place under a temporary name carrying its writer (:mod:`features.tempfiles` sweeps those a
  killed writer left) and renamed into place, optionally under the job's publication fence
  (:func:`features.fencing.publishing`);
* :mod:`features.storage.objects`: where the published files live, the home folder or the
  object store of ``VIGIE_STORE_URL`` (``s3://bucket/prefix``), with the same atomic
  publication (on S3: uploaded under a new key, manifest last);
* :mod:`features.storage.jsonsafe`: values made JSON-safe (NaN and infinities to null, numpy to
  Python) before they are written or stored;
* :mod:`features.storage.schema` and :mod:`features.storage.db`: every database table, the engine
  of a URL and the Alembic migrations (``features/storage/migrations``) that create and change
  the tables.

The paths of everything Vigie keeps are properties of :class:`features.settings.Settings`.
Nothing here imports from ``models``, ``scenarios`` or ``service``.
"""
