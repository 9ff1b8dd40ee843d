"""The offline arena from a clone: `python leaderboard.py --help` (installed: `arena-leaderboard`).

The work is in arena_preference/leaderboard.py (command line, I/O) and arena_preference/ratings.py (the fits).
"""

from arena_preference.leaderboard import cli

if __name__ == "__main__":
    cli()
