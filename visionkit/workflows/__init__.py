"""The workflows behind the Python API (:mod:`visionkit.api`): evaluation, training, classifier and
captioner heads. Each is a plain function the CLI calls; none prints."""
