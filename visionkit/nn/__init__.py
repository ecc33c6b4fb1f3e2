"""Generic network helpers any plugin can use (import the submodules; this package imports nothing).

* :mod:`.transfer` -- transfer-learning switches: :func:`~.transfer.freeze_stages`,
  :func:`~.transfer.trainable_parameter_names`, :func:`~.transfer.replace_classifier`.
"""
