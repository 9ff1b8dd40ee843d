#!/usr/bin/env bash
# The package as a user installs it: `pip install .` (a wheel, not editable) into a fresh venv, then the clone
# deleted and the console scripts run from another folder: arena-train must train and evaluate (the evaluate metric
# ships inside the package), arena-leaderboard must write leaderboard.json, and site-packages must gain at most 8
# top-level names, none of them generic.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
mkdir "$work/run"
cp "$work/clone/examples/train.jsonl" "$work/clone/examples/validation.jsonl" "$work/run/"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" install -q torch==2.13.0 "$work/clone[offline]"
rm -rf "$work/clone"
cd "$work/run"
export PATH="$work/venv/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

python - <<'EOF'
from importlib.metadata import distribution

names = distribution("arena-preference").read_text("top_level.txt").split()
generic = {"train", "app", "scoring", "recipe", "hub_io", "backbones", "calibration", "leaderboard", "metrics"}
print("top_level.txt:", names)
assert len(names) <= 8 and not generic & set(names), names
EOF

arena-train --model_name_or_path embedded:tiny-deberta --max_length 64 --train_file train.jsonl \
    --validation_file validation.jsonl --do_train --do_eval --max_steps 2 --output_dir out --disable_tqdm true
python -c "import json; m = json.load(open('out/eval_results.json')); print('eval_log_loss', m['eval_log_loss'])"
arena-leaderboard --model_name_or_path out --battles validation.jsonl --output_dir board --bootstrap 10
test -s board/leaderboard.json
arena-demo --help >/dev/null
echo "installed package: ok"
