"""arena-preference: which of two chatbot answers will people prefer?

The model itself (what ships in a Hub repo and loads with only torch and transformers) lives in the top-level
remote-code modules: configuration_arena, modeling_arena, encoding_arena, pipeline_arena, precision_arena;
arena_dataset is the `datasets` loader. This package holds everything else: training (`train`, `recipe`,
`training_arguments`), data (`battle_files`, `battle_schema`, `battle_transforms`), scoring and the metric, Hub I/O,
the leaderboard and its ratings, and the demo. Console scripts: arena-train, arena-leaderboard, arena-demo.
"""

__version__ = "0.1.0"
