"""Train, evaluate, predict and publish an arena preference model from a clone: `python train.py --help`.

The same command as `arena-train` (installed with the package); the work is in arena_preference/train.py.
"""

from arena_preference.train import cli

if __name__ == "__main__":
    cli()
