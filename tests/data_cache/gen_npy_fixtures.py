#!/usr/bin/python3
"""Writes the small .npy fixtures of tests/data_cache with numpy (Debian's python3-numpy).

Run from anywhere: /usr/bin/python3 tests/data_cache/gen_npy_fixtures.py
The files are committed, so the tests need no Python. Values follow simple formulas that the
C++ test recomputes: value(i) = 7 * i - 3 (signed), 7 * i + 3 (unsigned), int16: 3 * i - 100.
"""
import os

import numpy

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
os.makedirs(here, exist_ok=True)


def save(name, array):
    numpy.save(os.path.join(here, name), array, allow_pickle=True)


n = 10
save("int32_1d.npy", (7 * numpy.arange(n) - 3).astype(numpy.int32))
save("int64_1d.npy", (7 * numpy.arange(n) - 3).astype(numpy.int64))
save("uint32_1d.npy", (7 * numpy.arange(n) + 3).astype(numpy.uint32))
save("int16_1d.npy", (3 * numpy.arange(n) - 100).astype(numpy.int16))
# A sample index: [N + 1, 2] rows, C order, in both dtypes Megatron uses.
save("int32_2d.npy", (7 * numpy.arange(2 * n) - 3).astype(numpy.int32).reshape(n, 2))
save("int64_2d.npy", (7 * numpy.arange(2 * n) - 3).astype(numpy.int64).reshape(n, 2))
save("int32_empty.npy", numpy.zeros(0, dtype=numpy.int32))
# Refused: big-endian values, Fortran order of a 2-D array, floats.
save("int32_big_endian.npy", (7 * numpy.arange(n) - 3).astype(">i4"))
save("int32_fortran.npy", numpy.asfortranarray((7 * numpy.arange(2 * n) - 3).astype(numpy.int32).reshape(n, 2)))
save("float64_1d.npy", numpy.arange(n, dtype=numpy.float64))

# A Megatron-Core index cache as GPTDataset writes it (numpy.save of its int32 / int32 / uint32
# arrays and a json.dumps(indent=4) description), for case 3 of
# tests/data_pipeline/data/megatron_gpt_indices.jsonl (indices computed with Megatron's
# algorithms): train split of "1,1,1" over 40 sequences, L = 3, 161 samples, seed 99991,
# 4 epochs with a separate last epoch.
import collections
import hashlib
import json

reference = os.path.join(os.path.dirname(here), "..", "data_pipeline", "data", "megatron_gpt_indices.jsonl")
with open(reference) as f:
    case = json.loads(f.readlines()[3])
x, want = case["input"], case["expected"]
assert x["which"] == 0 and x["extra"] and x["drop"] and x["split"] == "1,1,1"
weights = numpy.array([1.0, 1.0, 1.0])
weights = weights / numpy.sum(weights)
bounds = [0.0]
for w in weights:
    bounds.append(bounds[-1] + float(w))
description = collections.OrderedDict()
description["class"] = "GPTDataset"
description["dataset_path"] = "/megatron/data/corpus_text_document"
description["num_samples"] = x["n"]
description["index_split"] = "train"
description["random_seed"] = x["seed"]
description["sequence_length"] = x["L"]
description["split"] = x["split"]
description["split_matrix"] = [(bounds[i], bounds[i + 1]) for i in range(3)]
description["tokenizer"] = collections.OrderedDict(
    [("class", "_GPT2BPETokenizer"), ("tokenizer_path", ["gpt2-vocab.json", "gpt2-merges.txt"])])
text = json.dumps(description, indent=4)
cache = os.path.join(here, "megatron_cache")
os.makedirs(cache, exist_ok=True)
base = os.path.join(cache, hashlib.md5(text.encode("utf-8")).hexdigest() + "-GPTDataset-train-")
with open(base + "description.txt", "wt") as f:
    f.write(text)
numpy.save(base + "document_index.npy", numpy.array(want["doc"], dtype=numpy.int32), allow_pickle=True)
numpy.save(base + "sample_index.npy", numpy.array(want["sample"], dtype=numpy.int32).reshape(-1, 2), allow_pickle=True)
numpy.save(base + "shuffle_index.npy", numpy.array(want["shuffle"], dtype=numpy.uint32), allow_pickle=True)
with open(os.path.join(cache, "lengths.json"), "wt") as f:
    json.dump(x["lengths"], f)
