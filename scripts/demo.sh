#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, build, fetch a real corpus
# (Brown) and the GPT-2 tokenizer files, preprocess, train examples/gpt/tiny.toml on CPU with the
# validation loss falling, then continue a prompt greedily. Extra args go to `megahost run`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/install_deps.sh
scripts/fetch_data.sh
scripts/build.sh
MEGAHOST="${MEGAHOST_BUILD_DIR:-$ROOT/build}/bin/megahost"

if [ ! -f .data/brown_text_document.idx ]; then
  "$MEGAHOST" preprocess --input .data/brown.jsonl --output-prefix .data/brown \
    --tokenizer-type GPT2BPETokenizer --vocab-file .data/npm/gpt2/package/encoder.json \
    --merge-file .data/npm/gpt2/package/vocab.bpe --append-eod --workers "$(nproc)"
fi

rm -rf runs/tiny   # a fresh run each time (remove this line to resume instead)
"$MEGAHOST" run examples/gpt/tiny.toml "$@"

echo
echo "validation loss over training (runs/tiny/metrics.jsonl):"
grep '"split":"valid"' runs/tiny/metrics.jsonl | sed -E 's/.*"iteration":([0-9]+).*"lm_loss":([0-9.eE+-]+).*/  iteration \1: \2/'
echo
echo "greedy continuation:"
"$MEGAHOST" generate examples/gpt/tiny.toml --prompt "The jury said that the" --max-new-tokens 24
