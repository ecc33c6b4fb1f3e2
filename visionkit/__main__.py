"""``python -m visionkit`` (and ``torchrun --nproc-per-node N -m visionkit train ...``): the visionkit CLI."""

from visionkit.cli import main

if __name__ == "__main__":
    main()
