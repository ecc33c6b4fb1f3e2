"""``python -m visionkit`` (and ``torchrun --nproc-per-node N -m visionkit train ...``): the visionkit CLI."""

from visionkit import cli


def _mount_training_commands() -> None:
    """Mount ``train`` and ``eval run`` when :mod:`visionkit.cli` does not yet (a no-op once it does)."""
    from visionkit import cli_train
    from visionkit.cli_eval import eval_app

    if not any(c.name == "train" for c in cli.app.registered_commands):
        cli.app.command("train")(cli_train.train)
    if not any(c.name == "run" for c in eval_app.registered_commands):
        eval_app.command("run")(cli_train.evaluate_pipeline)


if __name__ == "__main__":
    _mount_training_commands()
    cli.main()
